"""Pruning: lmplz's count thresholds (their parity with lmplz's pruned PTB models is in
``test_ngram.py``), Stolcke's entropy pruning against a brute-force relative entropy, and one
clear line for every bad threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_ngram import TEXT as NLTK_TEXT

from ngram import NgramError, NgramLM
from ngram.prune import backoff_weights

TEXT = [*NLTK_TEXT, "the cat sat on a dog"]  # test_ngram's corpus and one more sentence


def _model(order=3, **kw) -> NgramLM:
    return NgramLM.fit([s.split() for s in TEXT], order, "kn", discount=0.6, **kw)


def _words(m: NgramLM, k: int, i: int) -> list[int]:
    return m.words_of(k)[i].tolist()


def _distribution(m: NgramLM, history: list[int]) -> np.ndarray:
    """p(. | history) over the vocabulary; a history that starts with <s> is a sentence's
    beginning."""
    bos = bool(history) and history[0] == m.bos_id
    return np.exp(m.next_logprobs(history[1:] if bos else history, at_start=bos))


def _history_prob(m: NgramLM, history: list[int]) -> float:
    """P(h) by the chain rule, each word from the words before it."""
    bos = bool(history) and history[0] == m.bos_id
    words = history[1:] if bos else history
    return math.prod(
        float(_distribution(m, history[: len(history) - len(words) + j])[w])
        for j, w in enumerate(words)
    )


def test_entropy_deltas_equal_a_brute_force_relative_entropy():
    """For every stored 2- and 3-gram h w: remove it alone, renormalise h's backoff weight by
    brute force (the mass left, over the lower-order mass of the words h no longer lists), and
    sum P(h) * p(v|h) log(p(v|h) / p'(v|h)) over the whole vocabulary."""
    m = _model()
    for k in (2, 3):
        deltas = m.entropy_deltas(k)
        for i in range(len(m.keys[k - 1])):
            gram = _words(m, k, i)
            h = gram[:-1]
            p = _distribution(m, h)
            lower = np.exp(m.next_logprobs(h[1:], at_start=False))  # h' = h less a word
            listed = [
                _words(m, k, j)[-1]
                for j in range(len(m.keys[k - 1]))
                if _words(m, k, j)[:-1] == h and j != i
            ]
            q = np.ones(len(p), bool)
            q[listed] = False  # the words h backs off for after the removal
            bow = (1 - p[listed].sum()) / lower[q].sum()
            pruned = np.where(q, bow * lower, p)
            assert pruned.sum() == pytest.approx(1.0, abs=1e-12)
            kl = float(np.sum(p * np.log(p / pruned)))
            assert deltas[i] == pytest.approx(_history_prob(m, h) * kl, rel=1e-9, abs=1e-15)


def test_entropy_pruning_removes_what_costs_less_than_the_threshold():
    m = _model()
    deltas = m.entropy_deltas(3)
    threshold = float(np.median(np.expm1(deltas)))
    pruned = _model(prune_entropy=threshold)
    kept = {tuple(g) for g in pruned.words_of(3).tolist()}
    expect = {
        tuple(g) for g, d in zip(m.words_of(3).tolist(), deltas) if math.expm1(d) >= threshold
    }
    assert kept == expect and 0 < len(kept) < len(m.keys[2])
    assert pruned.info["prune_entropy"] == threshold
    # still a distribution after every context, and every lookup still exact
    for ctx in ([], [2], [2, 3], [5, 4]):
        for at_start in (True, False):
            assert np.exp(pruned.next_logprobs(ctx, at_start)).sum() == pytest.approx(1.0)
    ids = np.array([2, 3, 4, 1, 5, 6, 2, 1])
    via_states = []
    state = pruned.begin(1)
    for w in ids:
        lp, state = pruned.extend(state, [w])
        via_states.append(lp[0])
        if w == 1:
            state = pruned.begin(1)
    np.testing.assert_allclose(pruned.score_ids(ids), via_states, rtol=1e-12)
    assert len(_model(prune_entropy=0).keys[2]) == len(m.keys[2])  # 0 prunes nothing


def test_count_pruning_drops_rare_ngrams_and_keeps_a_distribution():
    m = _model()
    pruned = _model(prune=[0, 1, 1])
    assert len(pruned.keys[0]) == len(m.keys[0])  # unigrams are never pruned
    for k in (2, 3):
        assert 0 < len(pruned.keys[k - 1]) < len(m.keys[k - 1])
    for ctx in ([], [2], [2, 3]):
        assert np.exp(pruned.next_logprobs(ctx, True)).sum() == pytest.approx(1.0)
    assert pruned.info["prune"] == [0, 1, 1]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"prune": [0, 1]}, r"prune=\[0, 1\] needs one integer count threshold per order \(3"),
        ({"prune": [1, 1, 1]}, "unigrams are never pruned"),
        ({"prune": [0, 2, 1]}, "not decreasing"),
        ({"prune": [0, -1, -1]}, ">= 0"),
        ({"prune": [0, 1.5, 2]}, "one integer"),
        ({"prune": "011"}, "one integer"),
        ({"prune_entropy": -1e-7}, "prune_entropy=-1e-07 must be a number >= 0"),
        ({"prune_entropy": "x"}, "prune_entropy='x' must be a number"),
    ],
)
def test_bad_thresholds_get_one_line(kw, message):
    with pytest.raises(NgramError, match=message):
        _model(**kw)


def test_additive_models_refuse_pruning():
    with pytest.raises(NgramError, match="prune needs a backoff model"):
        NgramLM.fit([s.split() for s in TEXT], 2, "laplace", prune=[0, 1])
    with pytest.raises(NgramError, match="prune_entropy needs a normalised backoff model"):
        NgramLM.fit([s.split() for s in TEXT], 2, "laplace", prune_entropy=1e-6)


def test_a_backoff_mass_that_cancels_to_zero_stays_positive():
    # kept bigrams whose probabilities sum to 1 in float64 although a removed one had 1e-17:
    # 1 - sum cancels to 0, and the former formula, log(max(1 - sum, 0)), gave the context a
    # backoff weight of log 0: every word not stored after it had probability 0
    p_kept = np.array([0.5 + (0.5 - 1e-17)])
    assert 1 - p_kept[0] == 0.0
    bow = backoff_weights(p_kept, np.array([0.3]), np.array([1e-17]), np.array([0.2]))
    assert np.isfinite(bow).all()
    assert bow[0] == pytest.approx(math.log(1e-17) - math.log(0.7))
    # no cancellation: exactly (1 - sum p) / (1 - sum q)
    bow = backoff_weights(np.array([0.6]), np.array([0.5]), np.array([0.1]), np.array([0.2]))
    assert bow[0] == pytest.approx(math.log(0.4 / 0.5))


def test_a_model_file_that_gives_a_word_probability_zero_is_refused(tmp_path):
    m = _model()
    m.save(tmp_path / "good.npz")
    NgramLM.load(tmp_path / "good.npz")
    ctx = int(m.keys[2][0] // m.base)  # a bigram context that stores only some words after it
    m.logbow[1][ctx] = -np.inf
    m.save(tmp_path / "dead.npz")
    with pytest.raises(NgramError, match="backoff weight 0 while words are missing after it"):
        NgramLM.load(tmp_path / "dead.npz")
    m = _model()
    m.logp[0][3] = -np.inf
    m.save(tmp_path / "zero.npz")
    with pytest.raises(NgramError, match="a word of the vocabulary has unigram probability 0"):
        NgramLM.load(tmp_path / "zero.npz")
