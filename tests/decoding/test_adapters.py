"""Decoder adapters (seqlm.adapters) held to their decoders' documented contracts by small
searches written here: ESPnet's BatchScorerInterface (shapes, log-softmax rows, batched
states selected per hypothesis) and torchaudio's CTCDecoderLM (a trie of states, natural-log
word scores, the end score). Neither package is installed: the contracts are what is tested."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, optional

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


@pytest.fixture(scope="module")
def kn3_arpa(tmp_path_factory):
    run = tmp_path_factory.mktemp("pyctc-kn3")
    train(make_config("train", ["model=kn3", *SMALL_AGREEMENT, "logger=none"]), run_dir=run)
    return run / "model.arpa"


def ctc_logits(text: str, labels: list[str], seed: int = 0) -> np.ndarray:
    """(T, C) log-probabilities whose best path spells ``text`` (two frames a character, a
    blank between repeats), with noise and a runner-up character in every frame."""
    rng = np.random.default_rng(seed)
    blank = labels.index("")
    frames = []
    for i, ch in enumerate(text):
        if i and text[i - 1] == ch:
            frames.append(blank)
        frames += [labels.index(ch)] * 2
    logits = rng.normal(0, 1, (len(frames) + 2, len(labels)))
    for t, c in enumerate([blank, *frames, blank]):
        logits[t, c] += 6
        logits[t, rng.integers(len(labels))] += 4.5  # a competitor the LM has to settle
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def _labels(words: list[str]) -> list[str]:
    return ["", " ", *sorted({c for w in words for c in w})]


def test_pyctcdecode_beams_with_seqlm_equal_those_with_kenlm(kn3_arpa):
    optional("kenlm")
    from pyctcdecode import Alphabet, BeamSearchDecoderCTC, build_ctcdecoder
    from pyctcdecode.language_model import load_unigram_set_from_arpa

    from seqlm.adapters import pyctcdecode_lm

    unigrams = sorted(load_unigram_set_from_arpa(str(kn3_arpa)))
    words = [w for w in unigrams if not w.startswith("<")]
    labels = _labels(words)
    options = {"alpha": 0.6, "beta": 1.2, "unk_score_offset": -8.0}
    theirs = build_ctcdecoder(labels, str(kn3_arpa), unigrams=unigrams, **options)
    ours = BeamSearchDecoderCTC(
        Alphabet.build_alphabet(labels),
        language_model=pyctcdecode_lm(seqlm.load(kn3_arpa), unigrams=unigrams, **options),
    )
    for seed, text in enumerate(["the dogs run", "the tall lawyer follows the poets"]):
        logits = ctc_logits(text, labels, seed)
        a = theirs.decode_beams(logits, beam_width=16)
        b = ours.decode_beams(logits, beam_width=16)
        assert abs(a[0][4] - a[0][3]) > 1  # the LM weighs in the fused score
        assert [x[0] for x in a] == [x[0] for x in b]  # the same beams in the same order
        for x, y in zip(a, b):
            assert x[3] == pytest.approx(y[3], abs=1e-9)  # acoustic (logit) score
            assert x[4] == pytest.approx(y[4], abs=1e-3)  # fused score: KenLM stores floats


def test_pyctcdecode_fused_score_of_a_network_is_its_parts(lm):
    from pyctcdecode import Alphabet, BeamSearchDecoderCTC

    from seqlm.adapters import pyctcdecode_lm

    words = lm.vocab.itos[2:]
    labels = _labels(words)
    alpha, beta = 0.7, 0.9
    decoder = BeamSearchDecoderCTC(
        Alphabet.build_alphabet(labels), language_model=pyctcdecode_lm(lm, alpha=alpha, beta=beta)
    )
    text, _, _, logit_score, fused = decoder.decode_beams(ctc_logits("the dogs run", labels))[0]
    spoken = text.split()
    assert all(w in lm.vocab.stoi for w in spoken)
    lm_logp = lm.scorer.sentence_logprobs([lm.vocab.encode(spoken)])[0]  # </s> included
    assert fused == pytest.approx(logit_score + alpha * lm_logp + beta * len(spoken), abs=1e-4)
