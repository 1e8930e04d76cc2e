"""The adaptive softmax (seqlm.models.output.AdaptiveSoftmax): against torch's
``AdaptiveLogSoftmaxWithLoss`` with copied weights, against its equations written out, summed
over the whole vocabulary by brute force, and through every path that reads a network."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, preset, seqlm

import seqlm as seqlm_api
from seqlm.commands import eval as eval_cmd
from seqlm.commands.train import train
from seqlm.data.batching import IGNORE
from seqlm.errors import SeqlmError
from seqlm.evaluation.test_time import Cache, Dynamic, adapted_logprobs
from seqlm.models.output import AdaptiveSoftmax
from seqlm.scorers import load_scorer, normalise_blank

V, D = 50, 12
CUTOFFS = [6, 20, 35]


def adaptive(tied=None) -> AdaptiveSoftmax:
    torch.manual_seed(0)
    return AdaptiveSoftmax(D, V, CUTOFFS, 2.0, tied)


def test_log_probs_equal_torchs_adaptive_log_softmax_with_copied_weights():
    ours = adaptive()
    theirs = torch.nn.AdaptiveLogSoftmaxWithLoss(D, V, CUTOFFS, div_value=2.0, head_bias=True)
    with torch.no_grad():
        theirs.head.weight.copy_(torch.cat([ours.head.weight, ours.clusters.weight]))
        theirs.head.bias.copy_(torch.cat([ours.head.bias, ours.clusters.bias]))
        for mine, other in zip(ours.tails, theirs.tail):
            other[0].weight.copy_(mine[0].weight)
            other[1].weight.copy_(mine[1].weight)
    h = torch.randn(40, D)
    target = torch.randint(0, V, (40,))
    torch.testing.assert_close(ours.log_probs(h), theirs.log_prob(h), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        ours.target_log_probs(h, target), theirs(h, target).output, rtol=0, atol=1e-6
    )


def test_a_tail_words_log_probability_is_the_head_cluster_plus_the_tail_word():
    net = adaptive()
    h = torch.randn(D, dtype=torch.float64)
    with torch.no_grad():
        W = {k: v.double() for k, v in net.state_dict().items()}
    head = torch.cat(
        [W["head.weight"] @ h + W["head.bias"], W["clusters.weight"] @ h + W["clusters.bias"]]
    )
    # word 27 lies in cluster 1 = [20, 35): its projection is D / 2**2 = 3 wide
    assert W["tails.1.0.weight"].shape == (3, D)
    tail = W["tails.1.1.weight"] @ (W["tails.1.0.weight"] @ h)
    want = torch.log_softmax(head, 0)[6 + 1] + torch.log_softmax(tail, 0)[27 - 20]
    with torch.no_grad():
        got = net.target_log_probs(h.float()[None], torch.tensor([27]), torch.float64)
    assert float(got[0]) == pytest.approx(float(want), abs=1e-5)
    # and a head word is the head's softmax alone
    with torch.no_grad():
        got = net.target_log_probs(h.float()[None], torch.tensor([4]), torch.float64)
    assert float(got[0]) == pytest.approx(float(torch.log_softmax(head, 0)[4]), abs=1e-5)


@pytest.mark.parametrize("tied", [False, True])
def test_the_distribution_sums_to_one_word_by_word(tied):
    emb = torch.nn.Embedding(V, D) if tied else None
    net = adaptive(emb)
    h = torch.randn(7, D)
    # brute force: every word of the vocabulary asked for one at a time, through the target path
    each = torch.stack(
        [net.target_log_probs(h, torch.full((7,), w), torch.float64) for w in range(V)], -1
    )
    np.testing.assert_allclose(each.exp().sum(-1).detach().numpy(), 1.0, atol=1e-6)
    torch.testing.assert_close(each, net.log_probs(h, torch.float64), rtol=0, atol=1e-6)
    with torch.no_grad():
        padded = net.target_log_probs(h, torch.tensor([3, IGNORE, 40, IGNORE, 0, 1, 49]))
    assert float(padded[1]) == 0.0 and float(padded[3]) == 0.0


def test_tied_head_reads_the_embedding_and_every_cluster_gets_a_gradient():
    emb = torch.nn.Embedding(V, D)
    net = adaptive(emb)
    assert not hasattr(net, "head") and "head.weight" not in net.state_dict()
    h = torch.randn(5, D)
    loss = -net.target_log_probs(h, torch.tensor([0, 1, 2, 3, 4])).sum()  # head words only
    loss.backward()
    assert emb.weight.grad[:6].abs().sum() > 0 and emb.weight.grad[6:].abs().sum() == 0
    for tail in net.tails:  # in the graph with no target of theirs (zero gradient), as DDP wants
        assert all(p.grad is not None for p in tail.parameters())


def test_bf16_autocast_still_gives_float32_probabilities_that_sum_to_one():
    net = adaptive()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = net.log_probs(torch.randn(4, D))
    assert lp.dtype == torch.float32
    np.testing.assert_allclose(lp.exp().sum(-1).detach().numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cutoffs": [20, 10]}, "model.cutoffs=[20, 10] must be strictly increasing"),
        ({"cutoffs": [10, 60]}, "model.cutoffs=[10, 60]: 60 is not below the vocabulary size 50"),
        ({"cutoffs": [1, 10]}, "the first cutoff must be >= 2"),
        ({"cutoffs": [10], "div_value": 0.5}, "model.div_value=0.5 must be >= 1"),
        ({"softmax": "sampled"}, "model.softmax='sampled' is not one of full, adaptive"),
        ({"cutoffs": "abc"}, "model.cutoffs='abc': expected list or null"),
    ],
)
def test_bad_softmax_options_name_the_option(options, message):
    with pytest.raises(SeqlmError, match=message.replace("[", r"\[").replace("]", r"\]")):
        preset("model", "lstm", vocab_size=V, **{"softmax": "adaptive", **options})


def test_null_cutoffs_take_the_frequency_ranks_below_the_vocabulary():
    net = preset("model", "lstm", vocab_size=33_278, softmax="adaptive", emb_size=8, hidden_size=8)
    assert net.adaptive.bounds == [2000, 10000, 33278]
    small = preset("model", "gru", vocab_size=900, softmax="adaptive", emb_size=8, hidden_size=8)
    assert small.adaptive.bounds == [900]  # no cluster: the head is the whole vocabulary
    full = preset("model", "lstm", vocab_size=900, emb_size=8, hidden_size=8)
    assert full.adaptive is None and full.decoder.out_features == 900


def test_a_bad_cutoff_on_the_command_line_is_one_line_before_the_data_is_read(tmp_path):
    r = seqlm(
        "train",
        "model=lstm",
        "model.softmax=adaptive",
        "model.cutoffs=[50,20]",
        "logger=none",
        "data=text",
        f"data.path={tmp_path / 'missing.txt'}",  # read after the check: never reached
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "seqlm: error: model.cutoffs=[50, 20] must be strictly increasing"
    assert not list(tmp_path.glob("outputs/*/*"))


# -- every path, on a trained adaptive network -------------------------------------------------
ADAPTIVE = ["model.softmax=adaptive", "model.cutoffs=[8,20]", "model.div_value=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("adaptive")
    out = {}
    for name, model in (("lstm", "lstm"), ("birnn", "birnn"), ("tied", "lstm")):
        extra = ["model.tie_weights=true"] if name == "tied" else []
        cfg = make_config(
            "train", [f"model={model}", *SMALL_AGREEMENT, *TINY_TRAIN, *ADAPTIVE, *extra]
        )
        out[name] = (base / name, train(cfg, run_dir=base / name))
    return out


def test_training_lowers_the_loss_far_below_uniform(runs):
    for name, (_, m) in runs.items():
        vocab = m["data/vocab_size"]
        key = "val/pseudo_ppl" if name == "birnn" else "val/ppl"
        assert m[key] < vocab / 3, (name, m[key], vocab)
        assert m["model/softmax"] == "adaptive" and m["model/cutoffs"] == [8, 20]


def test_eval_score_and_tokens_out_agree_with_the_v_wide_distribution(runs, tmp_path):
    run, m = runs["lstm"]
    scorer = load_scorer(run)
    net = scorer.net
    ids = scorer.vocab.encode(["the", "dog", "runs", "<eos>", "the", "dogs", "run"])
    # brute force: the V-wide distribution at each step, from one pass
    with torch.no_grad():
        hidden, _ = net.features(torch.tensor([[1, *ids[:-1]]]))
        full = net.log_probs(hidden[0], torch.float64)
    np.testing.assert_allclose(full.exp().sum(-1).numpy(), 1.0, atol=1e-6)
    want = full[torch.arange(len(ids)), ids].numpy()
    np.testing.assert_allclose(scorer.token_logprobs(np.asarray(ids)), want, atol=1e-6)
    got = eval_cmd.run(make_config("eval", [f"ckpt={run}", f"tokens_out={tmp_path / 't.npz'}"]))
    assert got["test/ppl"] == pytest.approx(m["test/ppl"], rel=1e-5)  # Lightning's = scorer's
    with np.load(tmp_path / "t.npz") as z:
        assert np.exp(-z["test"].mean()) == pytest.approx(got["test/ppl"], rel=1e-9)


def test_the_step_api_and_generation_read_the_adaptive_softmax(runs):
    run, _ = runs["tied"]
    lm = seqlm_api.load(run)
    ids = lm.vocab.encode(["the", "tall", "lawyer", "runs"])
    whole = lm.scorer.sentence_logprobs([ids])[0]
    assert lm.sentence_log_prob(ids) == pytest.approx(whole, abs=1e-6)
    state = lm.start(2)
    dist = lm.next_log_probs(state)
    np.testing.assert_allclose(dist.exp().sum(-1).numpy(), 1.0, atol=1e-6)
    r = seqlm("generate", f"ckpt={run}", "num_samples=2", "seed=3", cwd=run)
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 2, r.stderr[-2000:]


def test_cache_and_dynamic_evaluation_keep_the_adaptive_distribution(runs):
    net = load_scorer(runs["lstm"][0]).net
    ids = np.random.default_rng(0).integers(2, 30, 200).astype(np.int32)
    base = adapted_logprobs(net, ids, rows=2, window=9)
    assert np.array_equal(adapted_logprobs(net, ids, 2, 9, cache=Cache(50, 0.5, 0.0)), base)
    cached = adapted_logprobs(net, ids, 2, 9, cache=Cache(50, 0.5, 0.3))
    dyn = adapted_logprobs(net, ids, 2, 9, dynamic=Dynamic(0.5))
    assert cached.mean() > base.mean()  # repeated random words: the cache helps
    assert dyn[:9].tolist() == pytest.approx(base[:9].tolist(), abs=1e-6)  # scored before update
    assert not np.allclose(dyn, base)


def test_fill_reads_the_adaptive_distribution_word_by_word(runs):
    scorer = load_scorer(runs["birnn"][0])
    net, V = scorer.net, len(scorer.vocab)
    left, right = scorer.vocab.encode(["the"]), scorer.vocab.encode(["runs"])
    blank = scorer.blank_logprobs(left, right)
    # brute force: each word in turn in the blank, its log-probability through the target path
    # (the model never reads the blank, so every row gives the same distribution)
    rows = torch.tensor([[1, *left, w, *right, 1, 1] for w in range(V)])
    with torch.no_grad():
        hidden = net.features(rows, torch.full((V,), rows.shape[1]))[:, len(left)]
        each = net.target_log_probs(hidden, torch.arange(V), torch.float64).numpy()
    np.testing.assert_allclose(blank, normalise_blank(each), rtol=0, atol=1e-6)


def test_the_gradients_command_runs_on_an_adaptive_network(runs, tmp_path):
    r = seqlm("gradients", str(runs["lstm"][0]), "lags=10", "out=g", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    with (tmp_path / "g" / "gradients.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 11 and all(0 < float(row["mean"]) < np.inf for row in rows)


def test_a_checkpoint_from_before_the_option_loads_as_a_full_softmax_and_scores_the_same(
    tmp_path,
):
    run = tmp_path / "full"
    train(make_config("train", ["model=lstm", *SMALL_AGREEMENT, *TINY_TRAIN]), run_dir=run)
    new = load_scorer(run)
    ids = np.asarray(new.vocab.encode(["the", "dog", "runs", "<eos>", "the", "dogs", "run"]))
    # the checkpoint as written before model.softmax existed: no softmax, cutoffs, div_value
    ckpt_file = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
    for key in ("softmax", "cutoffs", "div_value"):
        del ckpt["hyper_parameters"]["model"][key]
    old_file = tmp_path / "old.ckpt"
    torch.save(ckpt, old_file)
    old = load_scorer(old_file)
    assert old.net.adaptive is None and old.net.decoder.out_features == len(new.vocab)
    np.testing.assert_array_equal(
        old.token_logprobs(ids), load_scorer(ckpt_file).token_logprobs(ids)
    )
