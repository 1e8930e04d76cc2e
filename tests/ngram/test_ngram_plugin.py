"""The n-gram baselines inside seqlm: same data, same targets, same metric keys."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SMALL_AGREEMENT, make_config, shared

from seqlm.commands import eval as eval_cmd
from seqlm.commands import fill, generate, score
from seqlm.commands.train import train
from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError
from seqlm.scorers import load_scorer


@pytest.fixture(scope="module")
def ptb_runs(tmp_path_factory):
    root = shared("ptb")
    out = {}
    for name in ("kn2", "kn3"):
        run = tmp_path_factory.mktemp(name)
        out[name] = (
            run,
            train(
                make_config(
                    "train", [f"model={name}", "data=ptb", f"data.root={root}", "logger=none"]
                ),
                run_dir=run,
            ),
        )
    return out


@pytest.mark.parametrize("name, lmplz", [("kn3", 148.2815), ("kn2", 185.7049)])
def test_kn_on_ptb_within_a_thousandth_of_lmplz(ptb_runs, name, lmplz):
    run, m = ptb_runs[name]
    assert m["test/tokens"] == 82430  # the same N as every network on PTB
    assert m["test/ppl"] == pytest.approx(lmplz, rel=1e-3)
    on_disk = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        for k in ("loss", "ppl", "bits", "tokens"):
            assert f"{split}/{k}" in on_disk
    assert (run / "model.arpa").exists() and (run / "vocab.json").exists()
    # the networks' vocabulary: PTB's 10,000 words, saved with the run
    vocab = Vocab.load(run / "vocab.json")
    assert len(vocab) == 10000 and on_disk["data/vocab_hash"] == vocab.digest()


def test_eval_of_an_ngram_run_and_of_kenlms_own_arpa(ptb_runs):
    run, m = ptb_runs["kn3"]
    again = eval_cmd.run(make_config("eval", [f"ckpt={run}"]))
    assert again["test/ppl"] == pytest.approx(m["test/ppl"], rel=1e-12)
    arpa = shared("kenlm-ptb") / "ptb.o3.arpa.gz"
    ken = eval_cmd.run(
        make_config(
            "eval",
            [f"ckpt={arpa}", "data=ptb", f"data.root={shared('ptb')}", "arpa_unk='<ptb-unk>'"],
        )
    )
    assert ken["test/tokens"] == 82430
    assert ken["test/ppl"] == pytest.approx(148.2815, rel=1e-6)  # lmplz's own query figure


def test_tokens_out_of_kn3_is_its_own_score_ids_and_sums_to_the_loss(ptb_runs, tmp_path):
    run, m = ptb_runs["kn3"]
    out = tmp_path / "kn3.npz"
    eval_cmd.run(make_config("eval", [f"ckpt={run}", f"tokens_out={out}"]))
    z = np.load(out)
    scorer = load_scorer(run)
    for split, stage in (("valid", "val"), ("test", "test")):
        np.testing.assert_array_equal(z[split], scorer.model.score_ids(z[f"{split}_ids"]))
        assert len(z[split]) == m[f"{stage}/tokens"]
        assert -z[split].sum() == pytest.approx(
            m[f"{stage}/loss"] * m[f"{stage}/tokens"], rel=1e-12
        )
    assert not z["pseudo"] and str(z["family"]) == "ngram"


def test_commands_work_on_an_ngram_run(ptb_runs, tmp_path):
    run, _ = ptb_runs["kn3"]
    f = tmp_path / "nbest.txt"
    f.write_text("the company said it will sell the unit\nunit the sell will it said company the\n")
    rows = score.run(make_config("score", [f"ckpt={run}", f"input={f}"]))
    assert rows[0]["line"] == 1 and rows[0]["logprob"] > rows[1]["logprob"]
    loaded = load_scorer(run)
    ids = loaded.vocab.encode(["the", "company", "said"])
    lp = loaded.sentence_logprobs([ids])[0]
    by_hand = (
        loaded.next_logprobs([])[ids[0]]
        + loaded.next_logprobs(ids[:1])[ids[1]]
        + loaded.next_logprobs(ids[:2])[ids[2]]
        + loaded.next_logprobs(ids)[1]
    )
    assert lp == pytest.approx(by_hand, abs=1e-9)
    assert math.fsum(np.exp(loaded.next_logprobs(ids))) == pytest.approx(1.0, abs=1e-9)
    texts = generate.run(
        make_config("generate", [f"ckpt={run}", "prompt=the company", "num_samples=2"])
    )
    assert all(t.startswith("the company") for t in texts)
    best = fill.run(make_config("fill", [f"ckpt={run}", "text=the company ___ it will"]))
    # p(w | left, right) by brute force: the chain rule over the whole sentence for every
    # word, normalised by hand over the vocabulary without <unk> and <eos>
    left, right = loaded.vocab.encode(["the", "company"]), loaded.vocab.encode(["it", "will"])
    whole = loaded.sentence_logprobs([[*left, w, *right] for w in range(len(loaded.vocab))])
    whole[:2] = -np.inf
    p = np.exp(whole - whole.max())
    p /= math.fsum(p)
    top = np.argsort(-p)[:10]
    assert [w for w, _ in best] == [loaded.vocab.itos[i] for i in top]
    assert [q for _, q in best] == pytest.approx(p[top].tolist(), abs=1e-12)
    assert best[0][0] == "said"


def test_three_gram_cannot_see_agreement_far_away(tmp_path):
    m = train(make_config("train", ["model=kn3", "logger=none"]), run_dir=tmp_path)
    by_d = m["test/agreement_by_distance"]
    near = by_d[1][0] / by_d[1][1]
    far = sum(c for d, (c, t) in by_d.items() if d >= 5) / sum(
        t for d, (c, t) in by_d.items() if d >= 5
    )
    assert near > 0.8  # the subject is in its window (misses are unseen noun-verb pairs)
    assert abs(far - 0.5) < 0.1  # beyond two words it is guessing: chance
    assert m["test/ppl"] > m["test/ppl_floor"]


def test_ngram_run_logs_the_same_keys_to_the_logger(tmp_path):
    import csv

    m = train(make_config("train", ["model=kn2", "logger=csv", *SMALL_AGREEMENT]), run_dir=tmp_path)
    rows = list(csv.DictReader((tmp_path / "logs" / "metrics.csv").open()))
    assert float(rows[-1]["test/ppl"]) == pytest.approx(m["test/ppl"])
    assert float(rows[-1]["val/loss"]) == pytest.approx(m["val/loss"])


def test_an_infinite_perplexity_is_null_in_metrics_json_and_none_in_python(tmp_path):
    """An unsmoothed model gives unseen test events probability 0: its perplexity is infinite,
    which JSON cannot hold (docs/evaluation.md)."""
    cfg = make_config(
        "train", ["model=ngram", "model.smoothing=mle", "logger=none", *SMALL_AGREEMENT]
    )
    m = train(cfg, run_dir=tmp_path)
    text = (tmp_path / "metrics.json").read_text()
    on_disk = json.loads(text)
    assert m["test/ppl"] is None and on_disk["test/ppl"] is None
    assert "Infinity" not in text and "NaN" not in text
    assert on_disk["test/tokens"] == m["test/tokens"] > 0


def test_bad_ngram_options_are_one_line(tmp_path):
    with pytest.raises(SeqlmError, match="model: order=0 must be an integer >= 1"):
        train(
            make_config("train", ["model=ngram", "model.order=0", *SMALL_AGREEMENT]),
            run_dir=tmp_path,
        )
    with pytest.raises(SeqlmError, match="model: smoothing='kenser' is not one of"):
        train(
            make_config("train", ["model=ngram", "model.smoothing=kenser", *SMALL_AGREEMENT]),
            run_dir=tmp_path,
        )
