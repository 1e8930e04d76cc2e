"""The neural cache and dynamic evaluation (evaluation.test_time) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, preset

from seqlm.commands import eval as eval_cmd
from seqlm.commands.train import train
from seqlm.errors import SeqlmError
from seqlm.evaluation.test_time import Cache, Dynamic, adapted_logprobs, cache_probability

V = 13


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return preset("model", "lstm", vocab_size=V, emb_size=8, hidden_size=8).eval()


@pytest.fixture(scope="module")
def ids():
    rng = np.random.default_rng(0)
    return rng.integers(2, V, 300).astype(np.int32)


def test_off_settings_give_the_base_model_exactly(net, ids):
    base = adapted_logprobs(net, ids, rows=3, window=7)
    assert np.array_equal(adapted_logprobs(net, ids, 3, 7, cache=Cache(50, 0.5, 0.0)), base)
    assert np.array_equal(adapted_logprobs(net, ids, 3, 7, dynamic=Dynamic(0.0)), base)
    # and the base is the plain chain rule of the network over each row
    L = -(-len(ids) // 3)
    with torch.no_grad():
        row = torch.tensor([[1, *ids[: L - 1]]], dtype=torch.long)
        logp = torch.log_softmax(net(row)[0][0].double(), -1)
    np.testing.assert_allclose(base[:L], logp[torch.arange(L), ids[:L]].numpy(), atol=1e-6)


def test_cache_distribution_sums_to_one_and_matches_a_hand_computation(net, ids):
    h = torch.randn(5, 8)
    past_y = torch.tensor([3, 4, 3, 7, 9])
    p = cache_probability(h[4], h[:4], past_y[:4], theta=0.7, vocab_size=V)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    e = torch.exp(0.7 * (h[:4].double() @ h[4].double()))
    assert float(p[3]) == pytest.approx(float((e[0] + e[2]) / e.sum()), rel=1e-12)
    assert float(p[4]) == pytest.approx(float(e[1] / e.sum()), rel=1e-12)
    assert float(p[9]) == 0.0  # y_4 = 9 follows position 4 itself: not in its own cache
    # the mixture at position t of one row, by hand from the network's states
    cache = Cache(size=4, theta=0.7, lam=0.25)
    got = adapted_logprobs(net, ids[:40], rows=1, window=6, cache=cache)
    with torch.no_grad():
        x = torch.tensor([[1, *ids[:39]]], dtype=torch.long)
        states, _ = net.rnn(net.embedding(x))
        model = torch.softmax(net.decoder(states)[0].double(), -1)
    for t in (0, 1, 5, 6, 13, 39):
        past = slice(max(0, t - 4), t)
        pc = cache_probability(
            states[0, t], states[0, past], torch.as_tensor(ids[past], dtype=torch.long), 0.7, V
        )
        want = model[t, ids[t]] if t == 0 else 0.75 * model[t, ids[t]] + 0.25 * pc[ids[t]]
        assert got[t] == pytest.approx(float(torch.log(want)), abs=1e-6)


@pytest.mark.parametrize("method, lr", [("sgd", 5.0), ("rms", 0.01)])
def test_dynamic_evaluation_never_uses_a_token_before_scoring_it(net, ids, method, lr):
    """Change the split's last token: with weights that learn from every window, no earlier
    log-probability may move. (They do move against the base model: the weights learn.)"""
    d = Dynamic(lr, method)
    got = adapted_logprobs(net, ids, rows=3, window=7, dynamic=d)
    changed = ids.copy()
    changed[-1] = (ids[-1] + 1 - 2) % (V - 2) + 2
    again = adapted_logprobs(net, changed, rows=3, window=7, dynamic=d)
    assert np.array_equal(got[:-1], again[:-1]) and got[-1] != again[-1]
    assert np.abs(got - adapted_logprobs(net, ids, 3, 7)).max() > 1e-3
    assert all(torch.isfinite(p).all() for p in net.parameters())  # the scorer's net untouched


def test_the_cache_never_holds_the_future(net, ids):
    cache = Cache(size=30, theta=1.0, lam=0.5)
    got = adapted_logprobs(net, ids, rows=2, window=5, cache=cache)
    changed = ids.copy()
    changed[-1] = (ids[-1] + 1 - 2) % (V - 2) + 2
    again = adapted_logprobs(net, changed, rows=2, window=5, cache=cache)
    assert np.array_equal(got[:-1], again[:-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("adapt")
    for name, extra in (
        ("lstm", ["model=lstm", *TINY_TRAIN]),
        ("kn3", ["model=kn3", "logger=none"]),
        ("birnn", ["model=birnn", *TINY_TRAIN]),
    ):
        train(make_config("train", [*SMALL_AGREEMENT, *extra]), run_dir=base / name)
    return base


def test_eval_tunes_on_valid_and_keeps_the_keys(runs):
    plain = eval_cmd.run(make_config("eval", [f"ckpt={runs / 'lstm'}"]))
    tuned = eval_cmd.run(
        make_config("eval", [f"ckpt={runs / 'lstm'}", "cache.size=100", "cache.search=true"])
    )
    assert tuned["test/tokens"] == plain["test/tokens"] and "test/ppl" in tuned
    assert tuned["val/loss"] <= plain["val/loss"] + 1e-12  # lambda 0 is in the grid: never worse
    assert tuned["adapt/base_val_ppl"] == pytest.approx(plain["val/ppl"], rel=1e-9)
    assert tuned["adapt/cache_size"] == 100
    again = eval_cmd.run(
        make_config(
            "eval",
            [
                f"ckpt={runs / 'lstm'}",
                "cache.size=100",
                f"cache.theta={tuned['adapt/cache_theta']}",
                f"cache.lambda={tuned['adapt/cache_lambda']}",
            ],
        )
    )
    assert again["test/ppl"] == pytest.approx(tuned["test/ppl"], rel=1e-12)  # frozen for test


def test_a_search_starts_from_the_methods_switched_off(net, ids):
    """The first point of each grid is the base (lr 0, lambda 0), so the tuned validation loss
    is never above the model's own, and the printout speaks the config's names."""
    from seqlm.evaluation.test_time import tune

    cache, dynamic, tried = tune(net, ids, 3, 7, Cache(20, 0.3, 0.1), Dynamic(0.1), True, True)
    base = -float(adapted_logprobs(net, ids, 3, 7).mean())
    assert tried[0]["val/loss"] == pytest.approx(base, rel=1e-12)
    assert tried[0]["dynamic"].lr == 0.0 and any(t["cache"] and t["cache"].lam == 0 for t in tried)
    assert min(t["val/loss"] for t in tried) <= base
    assert str(cache).startswith("cache.size=20 cache.theta=") and "cache.lambda=" in str(cache)
    assert str(dynamic).startswith("dynamic.lr=")


@pytest.mark.parametrize(
    "run, overrides, message",
    [
        ("kn3", ["cache.size=10"], "is an n-gram model: it has no weights a neural cache"),
        ("birnn", ["dynamic.lr=0.1"], "is a bidirectional cloze model"),
        ("lstm", ["cache.size=-5"], "cache.size=-5 must be a positive integer"),
        ("lstm", ["dynamic.lr=-1"], "dynamic.lr=-1.0 must be >= 0"),
        ("lstm", ["dynamic.lr=1", "dynamic.method=adam"], "dynamic.method='adam' is not one of"),
    ],
)
def test_bad_test_time_options_are_one_line(runs, run, overrides, message):
    with pytest.raises(SeqlmError, match=message):
        eval_cmd.run(make_config("eval", [f"ckpt={runs / run}", *overrides]))


def test_a_networks_evaluation_shows_a_bar_on_a_terminal_only(runs, monkeypatch):
    import sys

    import pytorch_lightning as pl

    seen = []

    class Spy(pl.Trainer):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("enable_progress_bar"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pl, "Trainer", Spy)
    for tty in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        eval_cmd.run(make_config("eval", [f"ckpt={runs / 'lstm'}", "splits=[valid]"]))
    assert seen == [True, False]
