"""Decoder adapters (seqlm.adapters) held to their decoders' documented contracts by small
searches written here: ESPnet's BatchScorerInterface (shapes, log-softmax rows, batched
states selected per hypothesis) and torchaudio's CTCDecoderLM (a trie of states, natural-log
word scores, the end score). Neither package is installed: the contracts are what is tested."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config

import seqlm
from seqlm.adapters import ESPnetLM, TorchaudioLM
from seqlm.commands.train import train


@pytest.fixture(scope="module", params=["lstm", "kn3"])
def lm(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"adapt-{request.param}")
    extra = TINY_TRAIN if request.param == "lstm" else ["logger=none"]
    train(make_config("train", [f"model={request.param}", *SMALL_AGREEMENT, *extra]), run_dir=base)
    return seqlm.load(base)


def espnet_tokens(lm) -> list[str]:
    """An ESPnet-style token list: blank first, then words (one the LM lacks), <sos/eos> last."""
    return ["<blank>", *lm.vocab.itos[2:40], "qqqq", "<unk>", "<sos/eos>"]


def test_espnet_scores_are_log_softmax_rows_with_blank_excluded(lm):
    tokens = espnet_tokens(lm)
    scorer = ESPnetLM(lm, tokens)
    sos = len(tokens) - 1
    ys = torch.full((3, 1), sos)
    scores, states = scorer.batch_score(ys, [scorer.init_state(None)] * 3, None)
    assert scores.shape == (3, len(tokens)) and scores.dtype == torch.float32
    assert len(states) == 3
    assert torch.isinf(scores[:, 0]).all()  # the blank
    the = tokens.index("the")
    full = lm.next_log_probs(lm.start(1))[0]
    assert scores[0, the].item() == pytest.approx(full[lm.vocab.stoi["the"]].item(), abs=1e-5)
    assert scores[0, sos].item() == pytest.approx(full[1].item(), abs=1e-5)  # </s>
    # a token the LM lacks gets <unk>'s probability
    assert scores[0, tokens.index("qqqq")].item() == pytest.approx(full[0].item(), abs=1e-5)


def test_an_espnet_style_beam_search_scores_what_the_lm_scores(lm):
    """ESPnet's BatchBeamSearch loop in miniature: batch_score the running prefixes, keep the
    best (prefix, token) pairs, select_state the kept rows; a finished hypothesis's score is
    the LM's log-probability of its words and </s>."""
    tokens = espnet_tokens(lm)
    scorer = ESPnetLM(lm, tokens)
    sos, beam = len(tokens) - 1, 3
    hyps = [([sos], 0.0, None)]
    finished = []
    for _ in range(15):
        ys = torch.tensor([h[0] for h in hyps])
        scores, states = scorer.batch_score(ys, [h[2] for h in hyps], None)
        total = torch.tensor([h[1] for h in hyps])[:, None] + scores.double()
        top = torch.topk(total.flatten(), beam).indices
        running = []
        for flat in top.tolist():
            row, tok = divmod(flat, len(tokens))
            prefix = [*hyps[row][0], tok]
            state = scorer.select_state(states, row)
            hyp = (prefix, float(total[row, tok]), state)
            (finished if tok == sos else running).append(hyp)
        if finished or not running:
            break
        hyps = running
    assert finished
    for prefix, score, state in finished:
        ids = lm.vocab.encode([tokens[t] for t in prefix[1:-1]])
        want = lm.scorer.sentence_logprobs([ids])[0]
        assert score + scorer.final_score(state) == pytest.approx(want, abs=1e-4)


def test_espnet_single_score_equals_the_batched_one(lm):
    tokens = espnet_tokens(lm)
    scorer = ESPnetLM(lm, tokens)
    sos, the = len(tokens) - 1, tokens.index("the")
    one, state = scorer.score(torch.tensor([sos]), None, None)
    two, _ = scorer.score(torch.tensor([sos, the]), state, None)
    batch, states = scorer.batch_score(torch.tensor([[sos]]), [None], None)
    batch2, _ = scorer.batch_score(torch.tensor([[sos, the]]), states, None)
    torch.testing.assert_close(one, batch[0])
    torch.testing.assert_close(two, batch2[0], rtol=1e-6, atol=1e-6)


class TrieState:
    """What torchaudio's CTCDecoderLMState promises: ``child(i)`` is the same object for the
    same word, and states are hashable."""

    def __init__(self):
        self.children: dict[int, TrieState] = {}

    def child(self, i: int) -> TrieState:
        return self.children.setdefault(i, TrieState())


def test_torchaudio_word_scores_sum_to_the_sentence_log_probability(lm):
    words = lm.vocab.itos[2:]
    adapter = TorchaudioLM(lm, words, TrieState)
    sentence = ["the", "dogs", "run"]
    state, total = adapter.start(False), 0.0
    for w in sentence:
        state, score = adapter.score(state, words.index(w))
        total += score
    state, end = adapter.finish(state)
    want = lm.scorer.sentence_logprobs([lm.vocab.encode(sentence)])[0]
    assert total + end == pytest.approx(want, abs=1e-5)
    # the trie: the same word from the same state is the same child, advanced once
    root = adapter.start(False)
    a, sa = adapter.score(root, words.index("the"))
    b, sb = adapter.score(root, words.index("the"))
    assert a is b and sa == sb
    assert np.isfinite(sa) and sa < 0
