"""``rescore``: n-best lists written by the tests, WER against jiwer and against errors counted
by hand, every figure recomputed from scores.tsv, the search's result a coordinate-wise optimum,
and one line for every kind of bad input."""

from __future__ import annotations

import csv
import json
import random

import jiwer
import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, seqlm

from seqlm.commands import rescore
from seqlm.commands.train import train
from seqlm.data.corpora import agreement_corpus
from seqlm.decoding import rescoring as rs
from seqlm.errors import SeqlmError
from seqlm.scorers import load_scorer


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """A kn3 and a small LSTM on the built-in corpus."""
    base = tmp_path_factory.mktemp("rescore-lms")
    for name, extra in (("kn3", ["logger=none"]), ("lstm", TINY_TRAIN)):
        cfg = make_config("train", [f"model={name}", *SMALL_AGREEMENT, *extra])
        train(cfg, run_dir=base / name)
    return base


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    """200 utterances of the built-in corpus's test split, each with the reference, its wrong
    verb form, a deletion and an insertion, under noisy first-pass scores that often prefer a
    wrong one; utterances' lines are interleaved (not adjacent)."""
    base = tmp_path_factory.mktemp("rescore-lists")
    rnd = random.Random(0)
    sentences = agreement_corpus(3, 0, (6000, 1500, 4000)).sentences("test")[:200]
    lines, refs = [], []
    for i, s in enumerate(sentences):
        words = s.words
        refs.append(f"u{i}\t{' '.join(words)}")
        wrong = list(words)
        wrong[s.verb_index] = s.wrong_verb
        j = rnd.randrange(len(words))
        inserted = list(words)
        inserted.insert(rnd.randrange(len(words)), "the")
        for hyp in (words, wrong, words[:j] + words[j + 1 :], inserted):
            lines.append(f"u{i}\t{-2 * rnd.random():.4f}\t{' '.join(hyp)}")
    rnd.shuffle(lines)
    (base / "nbest.tsv").write_text("\n".join(lines) + "\n")
    (base / "refs.tsv").write_text("\n".join(refs) + "\n")
    return base


def _run(tmp_path, *overrides):
    cfg = make_config("rescore", ["logger=none", *overrides])
    return rescore.run(cfg, run_dir=tmp_path)


def _scores(run_dir):
    with (run_dir / "scores.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_rescoring_lowers_the_wer_and_every_figure_is_recomputable(lms, lists, tmp_path):
    m = _run(
        tmp_path,
        f"ckpt={lms / 'kn3'}",
        f"nbest={lists / 'nbest.tsv'}",
        f"refs={lists / 'refs.tsv'}",
    )
    assert m["dev/utterances"] == m["test/utterances"] == 100
    assert m["test/wer"] < m["test/wer_first_pass"] and m["test/wer_oracle"] == 0
    assert m["weights/lm"] > 0
    rows = _scores(tmp_path)
    assert len(rows) == 800
    refs = dict(ln.split("\t") for ln in (lists / "refs.tsv").read_text().splitlines())
    saved = json.loads((tmp_path / "rescore.json").read_text())
    w = np.array([saved["weights/lm"], saved["weights/words"], saved["weights/oov"]])
    by_utt = _group(rows)
    chosen = {}
    for utt, hyps in by_utt.items():
        totals = [float(h["first_pass"]) + np.dot(w, [float(h[k]) for k in ("lm", "words", "oov")])
                  for h in hyps]  # fmt: skip
        best = hyps[int(np.argmax(totals))]
        assert best["chosen"] == "1" and sum(h["chosen"] == "1" for h in hyps) == 1
        chosen[utt] = best["hypothesis"]
        for h in hyps:  # each hypothesis's errors as jiwer counts them, and its length
            out = jiwer.process_words(refs[utt], h["hypothesis"])
            assert int(h["errors"]) == out.substitutions + out.deletions + out.insertions
            assert int(h["words"]) == len(h["hypothesis"].split())
    written = dict(ln.split("\t") for ln in (tmp_path / "rescored.tsv").read_text().splitlines())
    assert written == chosen
    test = [u for u in refs if by_utt[u][0]["part"] == "test"]
    wer = jiwer.wer([refs[u] for u in test], [chosen[u] for u in test])
    assert m["test/wer"] == pytest.approx(wer, rel=1e-12)
    first = [max(by_utt[u], key=lambda h: float(h["first_pass"]))["hypothesis"] for u in test]
    assert m["test/wer_first_pass"] == pytest.approx(jiwer.wer([refs[u] for u in test], first))


def test_the_lm_column_is_the_sentence_log_probability_with_its_eos(lms, lists, tmp_path):
    _run(tmp_path, f"ckpt={lms / 'lstm'}", f"nbest={lists / 'nbest.tsv'}", "refs=null")
    rows = _scores(tmp_path)[:20]
    net = load_scorer(lms / "lstm")
    for r in rows:  # an independent forward pass: <eos> w_1 .. w_n predicting w_1 .. <eos>
        ids = net.vocab.encode(r["hypothesis"].split())
        x = torch.tensor([[1, *ids]])
        with torch.no_grad():
            logp = torch.log_softmax(net.lit.net(x)[0][0].double(), -1)
        by_hand = float(logp[torch.arange(len(ids) + 1), torch.tensor([*ids, 1])].sum())
        assert float(r["lm"]) == pytest.approx(by_hand, abs=2e-6)


def test_without_refs_the_given_weights_choose(lms, lists, tmp_path):
    m = _run(
        tmp_path,
        f"ckpt={lms / 'kn3'}",
        f"nbest={lists / 'nbest.tsv'}",
        "weights.lm=0.5",
        "weights.words=2.0",
        "weights.oov=-1.0",
    )
    assert "test/wer" not in m and m["weights/words"] == 2.0
    for utt_rows in _group(_scores(tmp_path)).values():
        totals = [
            float(r["first_pass"]) + 0.5 * float(r["lm"]) + 2.0 * int(r["words"]) - int(r["oov"])
            for r in utt_rows
        ]
        assert utt_rows[int(np.argmax(totals))]["chosen"] == "1"


def _group(rows):
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["utt"], []).append(r)
    return out


def test_two_lms_get_a_weight_each(lms, lists, tmp_path):
    m = _run(
        tmp_path,
        f"ckpt=[{lms / 'kn3'},{lms / 'lstm'}]",
        f"nbest={lists / 'nbest.tsv'}",
        f"refs={lists / 'refs.tsv'}",
    )
    assert isinstance(m["weights/lm"], list) and len(m["weights/lm"]) == 2
    assert m["dev/wer"] <= m["dev/wer_first_pass"]  # the search starts from the first pass
    rows = _scores(tmp_path)[:10]
    for column, name in (("lm1", "kn3"), ("lm2", "lstm")):  # each LM's own column
        scorer = load_scorer(lms / name)
        want = scorer.sentence_logprobs(
            [scorer.vocab.encode(r["hypothesis"].split()) for r in rows]
        )
        np.testing.assert_allclose([float(r[column]) for r in rows], want, atol=2e-6)


def test_the_search_ends_at_a_coordinate_wise_optimum():
    rng = np.random.default_rng(5)
    starts = np.arange(0, 400, 4)
    table = rs.Table(
        starts,
        rng.normal(0, 0.05, 400),  # a recogniser whose scores differ by ~0.05
        np.column_stack(
            [rng.normal(-30, 5, 400), rng.integers(5, 12, 400), rng.integers(0, 2, 400)]
        ),
        rng.integers(0, 4, 400),
    )
    grids = rs.grids(table, 1)
    assert len(grids[0]) == 1 + len(rs.STEPS) and len(grids[1]) == 1 + 2 * len(rs.STEPS)
    weights, trace = rs.tune(table, grids)
    best = table.errors_of(weights)
    assert trace[-1]["errors"] == best <= trace[0]["errors"]
    for i, grid in enumerate(grids):
        for value in grid:
            trial = weights.copy()
            trial[i] = value
            assert table.errors_of(trial) >= best


def test_wer_is_the_corpus_rate_not_a_mean_of_utterance_rates():
    refs = [["a", "b", "c", "d", "e", "f", "g", "h"], ["x"]]
    hyps = [["a", "b", "c", "d", "e", "f", "g", "h"], ["y"]]
    assert rs.corpus_wer(refs, hyps) == pytest.approx(1 / 9)  # a mean of rates would be 0.5
    assert rs.errors(["a", "b", "c"], ["a", "c", "d", "e"]) == 3  # a deletion, two insertions


def test_ptb_normalisation_and_character_units():
    assert rs.ptb_words("The caller's 1,200 cars, don't they?") == [
        "the", "caller", "'s", "N", "cars", "do", "n't", "they"
    ]  # fmt: skip
    assert rs.normalised("  Ｔhe   dog ", "none") == "The dog"  # NFKC, white space collapsed
    assert rs.units("我 想 买手机", "char") == ["我", "想", "买", "手", "机"]


def test_character_error_rate_with_a_character_level_lm(tmp_path):
    text = tmp_path / "zh.txt"
    text.write_text("我想买一部新手机\n我的手机坏了\n我打算买一部新手机\n" * 60, encoding="utf-8")
    overrides = ["model=kn2", "logger=none", "data=text", f"data.path={text}"]
    train(make_config("train", [*overrides, "data.tokenizer=char"]), run_dir=tmp_path / "lm")
    (tmp_path / "nbest.tsv").write_text("a\t0\t我想卖一部新手机\na\t-0.1\t我想买一部新手机\n")
    (tmp_path / "refs.tsv").write_text("a\t我想买一部新手机\n")
    m = _run(
        tmp_path / "out",
        f"ckpt={tmp_path / 'lm'}",
        f"nbest={tmp_path / 'nbest.tsv'}",
        f"refs={tmp_path / 'refs.tsv'}",
        "unit=char",
        "dev=0",
        "weights.lm=1.0",
    )
    assert m["test/wer_first_pass"] == pytest.approx(1 / 8)  # one character of eight
    assert m["test/ref_words"] == 8 and m["test/wer_oracle"] == 0
    # dev=0: nothing to tune on, so the given weights choose: the LM prefers 买 (buy) here
    assert m["weights/lm"] == 1.0 and m["test/wer"] == 0


@pytest.mark.parametrize(
    "nbest, refs, extra, message",
    [
        (
            "u1\t-1.0\ta b\nu1 -2 a c\n",
            "u1\ta b\n",
            [],
            r"nbest.tsv:2: expected utt<TAB>first_pass",
        ),
        ("u1\tloud\ta b\n", "u1\ta b\n", [], r"nbest.tsv:1: first_pass 'loud' is not a number"),
        ("u1\t-1\ta b\n", "u1\ta b\nu2\tc d\n", [], r"utterance 'u2' of .*refs.tsv has no hyp"),
        ("u1\t-1\ta b\nu3\t-1\tc\n", "u1\ta b\n", [], r"no reference for utterance 'u3' \(.*:2\)"),
        ("u1\t-1\ta b\n", "u1\ta b\nu1\ta c\n", [], r"refs.tsv:2: utterance 'u1' already has"),
        ("u1\t-1\ta b\n", "u1\ta b\n", ["dev=1.5"], r"dev=1.5 must be a fraction in \[0, 1\)"),
        ("u1\t-1\ta b\n", "u1\ta b\n", ["dev=-0.1"], r"dev=-0.1 must be a fraction"),
        ("u1\t-1\ta b\n", "u1\ta b\n", ["dev=DEV"], r"dev.txt:2: utterance 'u9' is not in refs"),
        ("u1\t-1\ta b\n", "u1\ta b\n", ["normalize=nfc"], r"normalize='nfc' is not one of"),
    ],
)
def test_bad_input_gets_one_line_and_nothing_is_written(lms, tmp_path, nbest, refs, extra, message):
    (tmp_path / "nbest.tsv").write_text(nbest)
    (tmp_path / "refs.tsv").write_text(refs)
    (tmp_path / "dev.txt").write_text("u1\nu9\n")
    extra = [e.replace("DEV", str(tmp_path / "dev.txt")) for e in extra]
    out = tmp_path / "out"
    args = [f"nbest={tmp_path / 'nbest.tsv'}", f"refs={tmp_path / 'refs.tsv'}", *extra]
    with pytest.raises(SeqlmError, match=message) as e:
        _run(out, f"ckpt={lms / 'kn3'}", *args)
    assert "\n" not in str(e.value) and not out.exists()


def test_cli_rescore_prints_the_wers_and_refuses_bad_input_with_exit_2(lms, lists, tmp_path):
    args = [f"nbest={lists / 'nbest.tsv'}", f"refs={lists / 'refs.tsv'}", "logger=none"]
    r = seqlm("rescore", f"ckpt={lms / 'kn3'}", *args, "hydra.run.dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "first pass" in r.stdout and "test (100)" in r.stdout
    assert (tmp_path / "out" / "rescore.json").is_file()
    bad = seqlm("rescore", f"ckpt={lms / 'birnn_missing'}", *args, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr


def test_a_mix_run_rescores_with_its_frozen_weights(lms, lists, tmp_path):
    from seqlm.commands import mix

    cfg = make_config("mix", [f"runs=[{lms / 'lstm'},{lms / 'kn3'}]", "logger=none"])
    mix.run(cfg, run_dir=tmp_path / "mix")
    _run(tmp_path / "out", f"ckpt={tmp_path / 'mix'}", f"nbest={lists / 'nbest.tsv'}", "refs=null")
    rows = _scores(tmp_path / "out")[:5]
    mixture = load_scorer(tmp_path / "mix")
    want = mixture.sentence_logprobs([mixture.vocab.encode(r["hypothesis"].split()) for r in rows])
    np.testing.assert_allclose([float(r["lm"]) for r in rows], want, atol=1e-5)


def test_compare_shows_the_wer_beside_the_lms_perplexity(lms, lists, tmp_path):
    from seqlm.commands.compare import compare

    args = [f"nbest={lists / 'nbest.tsv'}", f"refs={lists / 'refs.tsv'}"]
    m = _run(tmp_path / "rescored", f"ckpt={lms / 'kn3'}", *args)
    lm = json.loads((lms / "kn3" / "metrics.json").read_text())
    assert m["test/ppl"] == lm["test/ppl"] and m["data/vocab_hash"] == lm["data/vocab_hash"]
    rows = compare([lms / "kn3", tmp_path / "rescored"], tmp_path / "cmp")
    kn3, rescored = rows
    assert kn3["test_wer"] == "" and rescored["model"] == "rescore"
    assert rescored["test_wer"] == pytest.approx(100 * m["test/wer"])
    assert rescored["test_ppl"] == pytest.approx(kn3["test_ppl"])
    assert "test WER %" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_wandb_gets_the_wers_and_a_table_of_the_worst_test_utterances(lms, lists, tmp_path):
    from wandb_files import read_wandb_run

    args = [f"nbest={lists / 'nbest.tsv'}", f"refs={lists / 'refs.tsv'}"]
    cfg = make_config("rescore", [f"ckpt={lms / 'kn3'}", *args, "logger=wandb"])
    m = rescore.run(cfg, run_dir=tmp_path)
    logged = read_wandb_run(tmp_path)
    assert logged["summary"]["test/wer"] == pytest.approx(m["test/wer"], rel=1e-12)
    assert logged["exit_code"] == 0
    [table] = tmp_path.glob("wandb/offline-run-*/files/media/table/test/worst_utterances*.json")
    content = json.loads(table.read_text())
    assert content["columns"] == ["utt", "reference", "chosen", "errors"]
    errors = [row[3] for row in content["data"]]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    rows = [r for r in _scores(tmp_path) if r["part"] == "test" and r["chosen"] == "1"]
    assert errors[0] == max(int(r["errors"]) for r in rows)  # the worst one is there


def random_table(seed: int, utts: int = 150, per: int = 5) -> rs.Table:
    rng = np.random.default_rng(seed)
    n = utts * per
    return rs.Table(
        np.arange(0, n, per),
        rng.normal(0, 1.0, n),
        np.column_stack([rng.normal(-30, 5, n), rng.integers(5, 12, n), rng.integers(0, 2, n)]),
        rng.integers(0, 4, n),
    )


def test_the_exact_line_search_predicts_the_errors_at_every_step():
    """MERT's envelope: the errors it predicts along a line are what choosing at that point
    gives, anywhere but on a breakpoint."""
    table = random_table(1)
    rng = np.random.default_rng(2)
    for _ in range(5):
        w, d = rng.normal(size=3), rng.normal(size=3)
        xs, errors = rs.line_errors(table, w, d)
        assert len(errors) == len(xs) + 1
        for t in rng.uniform(-20, 20, 200):
            k = int(np.searchsorted(xs, t))
            if k < len(xs) and abs(xs[k] - t) < 1e-9:
                continue
            assert errors[k] == table.errors_of(w + t * d)


def test_the_line_searches_end_no_worse_than_the_grid_and_optimal_on_every_axis():
    table = random_table(3)
    grids = rs.grids(table, 1)
    grid_w, _ = rs.tune(table, grids)
    signed = [False, True, True]
    w, trace = rs.refine(table, grid_w, signed, rs.scales(table), restarts=4)
    best = table.errors_of(w)
    assert best <= table.errors_of(grid_w)
    assert trace[-1]["errors"] == best and trace[-1]["tied_optima"] >= 1
    assert w[0] >= 0
    for k in range(3):  # no step along an axis, anywhere in bounds, does better
        d = np.eye(3)[k]
        xs, errors = rs.line_errors(table, w, d)
        lo = -w[0] if k == 0 else -np.inf
        reachable = errors[np.searchsorted(xs, lo, side="right") :] if k == 0 else errors
        assert reachable.min() >= best


def nbest_apart(lists, path, order=("utt", "am", "lm", "text")):
    """The lists' hypotheses with the recogniser's scores apart: ``am`` the old first-pass
    score, ``lm`` a misleading old LM that prefers the hypothesis with an inserted word."""
    rows = [line.split("\t") for line in (lists / "nbest.tsv").read_text().splitlines()]
    refs = dict(line.split("\t") for line in (lists / "refs.tsv").read_text().splitlines())
    out = ["\t".join(order)]
    for utt, score, text in rows:
        bad = 3.0 if len(text.split()) > len(refs[utt].split()) else 0.0
        fields = {
            "utt": utt,
            "am": score,
            "lm": f"{bad:.1f}",
            "text": text,
            "first_pass": f"{float(score) + bad:.4f}",
            "words": str(len(text.split())),
        }
        out.append("\t".join(fields[c] for c in order))
    path.write_text("\n".join(out) + "\n")


def test_named_columns_replace_the_recognisers_lm(lms, lists, tmp_path):
    """With ``am`` and ``lm`` apart, the old LM's weight is tuned: this one misleads, so the
    search turns it (nearly) off, and the rescoring beats adding the new LM to the total."""
    nbest_apart(lists, tmp_path / "apart.tsv", ("lm", "utt", "words", "first_pass", "am", "text"))
    args = [f"ckpt={lms / 'kn3'}", f"refs={lists / 'refs.tsv'}"]
    apart = _run(tmp_path / "a", *args, f"nbest={tmp_path / 'apart.tsv'}")
    total = tmp_path / "total.tsv"  # the same recogniser, its total only
    total.write_text(
        "".join(
            f"{r[1]}\t{r[3]}\t{r[5]}\n"
            for r in (
                ln.split("\t") for ln in (tmp_path / "apart.tsv").read_text().splitlines()[1:]
            )
        )
    )
    added = _run(tmp_path / "b", *args, f"nbest={total}")
    assert apart["test/wer_first_pass"] == added["test/wer_first_pass"]  # first_pass picks it
    assert apart["weights/lm_old"] < 0.2  # 1 would pick the inserted word's hypothesis
    assert apart["test/wer"] < added["test/wer"]
    head = _scores(tmp_path / "a")[0]
    assert list(head)[3:6] == ["am", "lm_old", "lm"]


def test_without_a_first_pass_column_the_first_line_is_the_first_pass(tmp_path):
    (tmp_path / "n.tsv").write_text(
        "utt\tam\tlm\ttext\nu1\t-5\t-1\ta b\nu1\t-1\t-1\ta c\nu2\t0\t0\tx\n"
    )
    nbest = rs.read_nbest(tmp_path / "n.tsv")
    assert nbest.first_choice("u1") == 0 and nbest.old_lm["u1"] == [-1.0, -1.0]
    assert nbest.first_pass["u1"] == [-5.0, -1.0]  # am: the score the features add to


def test_srilm_plain_nbest_files_read_as_am_and_lm_apart(tmp_path):
    folder = tmp_path / "nbest"
    folder.mkdir()
    (folder / "u1.nbest").write_text("-120.5 -20.25 2 the dog\n-119 -30 3 the dog s\n")
    (folder / "u2.nbest").write_text("-80 -10 1 cats\n")
    nbest = rs.read_nbest(folder)
    assert nbest.utts == ["u1", "u2"]
    assert nbest.hyps["u1"] == ["the dog", "the dog s"]
    assert nbest.first_pass["u1"] == [-120.5, -119.0] and nbest.old_lm["u1"] == [-20.25, -30.0]
    assert nbest.first_choice("u1") == 0
    (folder / "u3.nbest").write_text("NBestList1.0\n(-1) the\n")
    with pytest.raises(SeqlmError, match=r"u3.nbest:1: SRILM's NBestList1.0 format"):
        rs.read_nbest(folder)


@pytest.mark.parametrize(
    "header, message",
    [
        ("utt\tam\ttext", r"n.tsv:1: am and lm come together"),
        ("utt\tscore\ttext", r"n.tsv:1: unknown column 'score'"),
        ("utt\twords\ttext", r"n.tsv:1: no score column: give am and lm, or first_pass"),
        ("utt\tam\tam\tlm\ttext", r"n.tsv:1: a column is named twice"),
    ],
)
def test_bad_headers_get_one_line(tmp_path, header, message):
    (tmp_path / "n.tsv").write_text(f"{header}\nu1\t-1\t-1\ta\n")
    with pytest.raises(SeqlmError, match=message):
        rs.read_nbest(tmp_path / "n.tsv")
