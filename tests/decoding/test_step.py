"""The step API (decoding.step): for every family the log-probabilities collected step by step sum
to ``sentence_logprobs``, every V-wide distribution sums to one, a network's carried state equals
one long pass, and selecting states equals computing them apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config

import seqlm
from seqlm.commands.train import train
from seqlm.errors import SeqlmError
from seqlm.scorers.network import NetworkStepLM
from seqlm.scorers.ngram_step import NgramStepLM

SENTENCES = [
    "the dog runs",
    "the tall lawyer beside the dancers behind the happy queens follows the poets",
    "cats",
    "",
    "zzz unknown the dogs",
]
FAMILIES = {
    "kn3": ["logger=none"],
    "kn2": ["logger=none"],
    "lstm": TINY_TRAIN,
    "gru": TINY_TRAIN,
    "rnn": TINY_TRAIN,
    # AWD-LSTM's shape: per-layer modules, weight drop and locked dropout (off when stepping)
    "awd": [*TINY_TRAIN, "model.num_layers=2", "model.hidden_sizes=[12,16]", "model.wdrop=0.3"],
    "birnn": TINY_TRAIN,
    # the cells after the tutorial: a state pair (mogrifier), a scan in training (min*)
    "mogrifier": TINY_TRAIN,
    "mingru": TINY_TRAIN,
    "minlstm": TINY_TRAIN,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("step-runs")
    for name, extra in FAMILIES.items():
        model = "lstm" if name == "awd" else name
        cfg = make_config("train", [f"model={model}", *SMALL_AGREEMENT, *extra])
        train(cfg, run_dir=base / name)
    return base


@pytest.mark.parametrize(
    "name", ["kn3", "kn2", "lstm", "gru", "rnn", "awd", "mogrifier", "mingru", "minlstm"]
)
def test_steps_sum_to_the_sentence_log_probability(runs, name):
    lm = seqlm.load(runs / name)
    lines = [lm.vocab.encode(s.split()) for s in SENTENCES]
    whole = lm.scorer.sentence_logprobs(lines)
    stepped = [lm.sentence_log_prob(ids) for ids in lines]
    # a float32 network summed over a sentence: stepping and the whole line round differently
    # (about float32's epsilon, 6e-8, of the sum), not more
    np.testing.assert_allclose(stepped, whole, rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize("name", ["kn3", "kn2", "lstm", "mogrifier"])
def test_one_state_at_a_time_sums_to_the_sentence_log_probability(runs, name):
    """``step_one``, what per-token decoders (pyctcdecode, flashlight-text) call: an n-gram's
    pure-Python lookups and a network's batch of one give the whole sentence's numbers."""
    lm = seqlm.load(runs / name)
    lines = [lm.vocab.encode(s.split()) for s in SENTENCES]
    whole = lm.scorer.sentence_logprobs(lines)
    for ids, want in zip(lines, whole):
        state, total = lm.start_one(), 0.0
        for i in ids:
            score, state = lm.step_one(state, i)
            assert isinstance(score, float)
            total += score
        assert total + lm.end_one(state) == pytest.approx(want, rel=1e-7, abs=1e-6)


def test_network_states_concatenate(runs):
    """``concat`` of two networks' states is the batch of both (the decoders' bank of rows)."""
    lm = seqlm.load(runs / "lstm")
    a, b = lm.advance(lm.start(2), torch.tensor([2, 3])), lm.start(1)
    both = lm.concat([a, b])
    want = torch.cat([lm.next_log_probs(a), lm.next_log_probs(b)])
    torch.testing.assert_close(lm.next_log_probs(both), want)


@pytest.mark.parametrize("name", ["kn3", "lstm", "awd", "mogrifier", "minlstm"])
def test_a_batch_of_states_steps_like_each_alone(runs, name):
    lm = seqlm.load(runs / name)
    lines = [lm.vocab.encode(s.split()) for s in SENTENCES[:2]] + [lm.vocab.encode(["the"] * 4)]
    state, totals = lm.start(3), torch.zeros(3, dtype=torch.float64)
    for t in range(3):  # three steps of every line together
        tokens = torch.tensor([ln[t] for ln in lines])
        dist = lm.next_log_probs(state)
        assert dist.shape == (3, lm.vocab_size)
        np.testing.assert_allclose(dist.exp().sum(1).numpy(), 1.0, atol=1e-9)
        picked = lm.token_log_probs(state, tokens)
        torch.testing.assert_close(picked, dist[torch.arange(3), tokens], rtol=0, atol=1e-6)
        totals += picked
        state = lm.advance(state, tokens)
    for b, ln in enumerate(lines):
        alone, total = lm.start(1), 0.0
        for i in ln[:3]:
            total += float(lm.token_log_probs(alone, torch.tensor([i]))[0])
            alone = lm.advance(alone, torch.tensor([i]))
        assert float(totals[b]) == pytest.approx(total, abs=1e-6)
        end = lm.end_log_probs(alone)
        torch.testing.assert_close(lm.end_log_probs(state)[b : b + 1], end, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["kn3", "lstm"])
def test_select_reorders_and_duplicates_states(runs, name):
    lm = seqlm.load(runs / name)
    a, b = lm.vocab.encode(["the"]), lm.vocab.encode(["cats"])
    state = lm.advance(lm.start(2), torch.tensor([a[0], b[0]]))
    picked = lm.select(state, torch.tensor([1, 1, 0]))
    assert lm.batch_size(picked) == 3
    dist, full = lm.next_log_probs(picked), lm.next_log_probs(state)
    torch.testing.assert_close(dist, full[[1, 1, 0]], rtol=0, atol=0)


def test_a_network_states_carried_hidden_equals_one_long_pass(runs):
    lm = seqlm.load(runs / "awd")
    assert isinstance(lm, NetworkStepLM)
    words = "the tall lawyer beside the dancers follows the poets"
    ids = lm.vocab.encode(words.split(" "))
    state = lm.start(1)
    for i in ids:
        state = lm.advance(state, torch.tensor([i]))
    with torch.no_grad():
        hidden, _ = lm.net.features(torch.tensor([[1, *ids]]))
    torch.testing.assert_close(state.hidden[0], hidden[0, -1], rtol=1e-6, atol=1e-6)


def test_an_arpa_file_steps_like_the_model_it_came_from(runs):
    npz, arpa = seqlm.load(runs / "kn3"), seqlm.load(runs / "kn3" / "model.arpa")
    assert isinstance(arpa, NgramStepLM)
    for s in SENTENCES[:3]:
        words = s.split()
        got = arpa.sentence_log_prob(arpa.vocab.encode(words))
        assert got == pytest.approx(npz.sentence_log_prob(npz.vocab.encode(words)), abs=1e-4)


def test_the_cloze_model_is_refused_in_one_line(runs):
    with pytest.raises(SeqlmError, match="is a bidirectional cloze model: it has no next-word"):
        seqlm.load(runs / "birnn")
