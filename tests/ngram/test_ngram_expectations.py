"""Other toolkits' published test expectations, run through ``ngram``.

- nltk.lm's unit tests (``nltk/test/unit/lm/test_models.py``, Apache 2.0): every asserted number
  of its MLE, Lidstone, Laplace, Witten-Bell and Kneser-Ney classes. nltk pads a sentence with
  n-1 ``<s>`` and n-1 ``</s>``, counts ``<s>`` as a unigram and in |V|; ``ngram`` pads one
  ``<s>`` (context only) and one ``</s>``, as KenLM. To compare the estimators and not the
  padding, nltk's corpus is given here as nltk sees it: its ``<s>`` as the word ``S`` and, where
  a number depends on it, its second ``</s>`` as the word ``E``. Two differences remain on
  purpose and are asserted against a hand computation instead: Witten-Bell's unigram level
  (nltk: the plain MLE; ``ngram``: interpolated with the uniform distribution, Chen & Goodman
  eq. 16, so that no word has probability 0) and Kneser-Ney's (nltk: the uniform distribution;
  ``ngram``: continuation counts interpolated with it, Chen & Goodman eq. 19).
- KenLM's ``lm/model_test.cc`` (LGPL 2.1) queries on its ``lm/test.arpa``, copied to
  ``tests/ngram/kenlm_test.arpa``: the log10 probabilities of ``Starters``, ``Continuation``,
  ``Blanks``, ``Unknowns`` and ``MinimalState``, to its tolerance (0.001 %). KenLM's state
  lengths, ``independent_left`` and ``ngram_length`` describe its own data structure and are
  not ported.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ngram import NgramLM, read_arpa

# -- nltk.lm -----------------------------------------------------------------------------------


def _nltk_model(order: int, method: str, end_pads: int = 0, **params) -> NgramLM:
    """nltk's test corpus ("abcd", "egadbe"; e and g outside its vocabulary a b c d z), padded
    as nltk pads it: n-1 ``S`` (its ``<s>``) before each sentence, ``end_pads`` of ``E`` (its
    extra ``</s>``) after it; our ``</s>`` ends the line."""
    itos = ["<unk>", "</s>", "S", "a", "b", "c", "d", "z"] + (["E"] if end_pads else [])
    ids = []
    for sent in ("abcd", "egadbe"):
        words = ["S"] * (order - 1) + [w if w in itos else "<unk>" for w in sent]
        ids += [itos.index(w) for w in words + ["E"] * end_pads] + [1]
    return NgramLM.fit_ids(np.asarray(ids), itos, order, method, **params)


def _p(m: NgramLM, word: str, context=None) -> float:
    """nltk's ``score(word, context)``: the context as given (a short one uses the lower
    orders), words outside the vocabulary as ``<unk>``, its ``<s>`` as ``S``."""
    ctx = ["S" if w == "<s>" else w for w in (context or [])]
    return math.exp(m.logprob("S" if word == "<s>" else word, ctx))


def _entropy(m: NgramLM, ngrams) -> float:
    """nltk's ``entropy``: minus the mean log2 score of the given n-grams."""
    scores = [_p(m, g[-1], list(g[:-1])) for g in ngrams]
    return -sum(math.log2(p) if p > 0 else -math.inf for p in scores) / len(ngrams)


NLTK_SCORES = [
    # (class, order, method, params, end pads, word, context, nltk's expected score)
    ("MleBigram", 2, "mle", {}, 0, "d", ["c"], 1),
    ("MleBigram", 2, "mle", {}, 0, "d", ["e"], 0),
    ("MleBigram", 2, "mle", {}, 0, "z", None, 0),
    ("MleBigram", 2, "mle", {}, 0, "a", None, 2.0 / 14),
    ("MleBigram", 2, "mle", {}, 0, "y", None, 3.0 / 14),
    ("MleTrigram", 3, "mle", {}, 1, "d", ["b", "c"], 1),
    ("MleTrigram", 3, "mle", {}, 1, "d", ["c"], 1),
    ("MleTrigram", 3, "mle", {}, 1, "a", None, 2.0 / 18),
    ("MleTrigram", 3, "mle", {}, 1, "z", None, 0),
    ("MleTrigram", 3, "mle", {}, 1, "y", None, 3.0 / 18),
    ("LidstoneBigram", 2, "lidstone", {"k": 0.1}, 0, "d", ["c"], 1.1 / 1.8),
    ("LidstoneBigram", 2, "lidstone", {"k": 0.1}, 0, "a", None, 2.1 / 14.8),
    ("LidstoneBigram", 2, "lidstone", {"k": 0.1}, 0, "z", None, 0.1 / 14.8),
    ("LidstoneBigram", 2, "lidstone", {"k": 0.1}, 0, "y", None, 3.1 / 14.8),
    ("LidstoneTrigram", 3, "lidstone", {"k": 0.1}, 0, "d", ["c"], 1.1 / 1.8),
    ("LidstoneTrigram", 3, "lidstone", {"k": 0.1}, 0, "e", ["c"], 0.1 / 1.8),
    ("LidstoneTrigram", 3, "lidstone", {"k": 0.1}, 0, "d", ["b", "c"], 1.1 / 1.8),
    ("LidstoneTrigram", 3, "lidstone", {"k": 0.1}, 0, "e", ["b", "c"], 0.1 / 1.8),
    ("LaplaceBigram", 2, "laplace", {}, 0, "d", ["c"], 2.0 / 9),
    ("LaplaceBigram", 2, "laplace", {}, 0, "a", None, 3.0 / 22),
    ("LaplaceBigram", 2, "laplace", {}, 0, "z", None, 1.0 / 22),
    ("LaplaceBigram", 2, "laplace", {}, 0, "y", None, 4.0 / 22),
]


@pytest.mark.parametrize("case", NLTK_SCORES, ids=lambda c: f"{c[0]}-{c[5]}|{c[6]}")
def test_nltk_scores(case):
    _, order, method, params, pads, word, context, expected = case
    m = _nltk_model(order, method, pads, **params)
    assert _p(m, word, context) == pytest.approx(expected, rel=1e-4, abs=1e-12)


@pytest.mark.parametrize(
    "method, params, ngrams, entropy, perplexity",
    [
        # TestMleBigram.test_entropy_perplexity_seen
        ("mle", {}, "<s> a|a b|b <UNK>|<UNK> a|a d|d </s>", 1.0975, 2.1398),
        # TestMleBigram.test_entropy_perplexity_unigrams
        ("mle", {}, "<s>|a|c|-|d|c|</s>", 3.0095, 8.0529),
        # TestLidstoneBigram.test_entropy_perplexity
        ("lidstone", {"k": 0.1}, "<s> a|a c|c <UNK>|<UNK> d|d c|c </s>", 4.0917, 17.0504),
        # TestLaplaceBigram.test_entropy_perplexity
        ("laplace", {}, "<s> a|a c|c <UNK>|<UNK> d|d c|c </s>", 3.1275, 8.7393),
    ],
)
def test_nltk_entropy_and_perplexity(method, params, ngrams, entropy, perplexity):
    m = _nltk_model(2, method, **params)
    grams = [tuple(g.split()) for g in ngrams.split("|")]
    h = _entropy(m, grams)
    assert h == pytest.approx(entropy, rel=1e-4)
    assert 2**h == pytest.approx(perplexity, rel=1e-4)


def test_nltk_mle_unseen_is_infinite():
    m = _nltk_model(2, "mle")
    assert m.logprob("d", ["e"]) == -math.inf  # TestMleBigram.test_logscore_zero_score
    unseen = [("<s>", "a"), ("a", "c"), ("c", "d"), ("d", "</s>")]
    assert math.isinf(_entropy(m, unseen))  # test_entropy_perplexity_unseen


@pytest.mark.parametrize("order, method, params, pads", [
    (2, "mle", {}, 0), (3, "mle", {}, 1), (2, "lidstone", {"k": 0.1}, 0),
    (3, "lidstone", {"k": 0.1}, 0), (2, "laplace", {}, 0), (3, "witten_bell", {}, 1),
    (3, "kn", {"discount": 0.1}, 0),
])  # fmt: skip
def test_nltk_sum_to_one_in_its_contexts(order, method, params, pads):
    """``test_sum_to_1``: for each of nltk's contexts the scores over the vocabulary sum to 1.
    nltk sums over its vocabulary, which includes <s> (here S)."""
    m = _nltk_model(order, method, pads, **params)
    for ctx in ("a", "c", "<s>", "b", "<UNK>", "d", "e", "r", "w"):
        total = sum(_p(m, w, [ctx]) for w in m.itos)
        assert total == pytest.approx(1.0, rel=1e-7), ctx


def test_nltk_witten_bell_trigram():
    """TestWittenBellInterpolatedTrigram. Above the unigrams every step is nltk's: gamma(b) =
    2/(2+2), mle(c|b) = 1/2, gamma(a b) = 1/2, and an unseen context (z b) backs off to (b).
    The unigram level differs on purpose: nltk's is the MLE (c: 1/18, z: 0, <UNK>: 3/18);
    ours interpolates it with the uniform distribution (Chen & Goodman eq. 16):
    p(w) = (c(w) + T/V) / (N + T), with N = 18 tokens, T = 8 word types seen, V = 9."""
    m = _nltk_model(3, "witten_bell", end_pads=1)
    N, T, V = 18, 8, 9

    def uni(c):
        return (c + T / V) / (N + T)

    assert _p(m, "c") == pytest.approx(uni(1), rel=1e-9)  # nltk: 1/18
    assert _p(m, "z") == pytest.approx(uni(0), rel=1e-9)  # nltk: 0
    assert _p(m, "y") == pytest.approx(uni(3), rel=1e-9)  # nltk: 3/18
    cb = (1 - 0.5) * 0.5 + 0.5 * uni(1)  # nltk: the same with 1/18 for the unigram
    assert _p(m, "c", ["b"]) == pytest.approx(cb, rel=1e-9)
    assert _p(m, "c", ["a", "b"]) == pytest.approx((1 - 0.5) + 0.5 * cb, rel=1e-9)
    assert _p(m, "c", ["z", "b"]) == pytest.approx(cb, rel=1e-9)  # nltk issue #2332


def test_nltk_kneser_ney_trigram():
    """TestKneserNeyInterpolatedTrigram (discount 0.1). Above the unigrams every step is nltk's:
    alpha(c|b) = (1 - 0.1)/2 with continuation counts, gamma(b) = 0.1*2/2, alpha(c|a b) =
    0.9, gamma(a b) = 0.1, and (z b) backs off to (b). The unigram level differs on purpose:
    nltk's is uniform (1/8 for every word); ours is Kneser-Ney's continuation unigram
    interpolated with the uniform: p(w) = (N1+(. w) - D)+ / N1+(. .) + D * T / N1+(. .) / V,
    counted below from the bigrams by hand."""
    m = _nltk_model(3, "kn", discount=0.1)
    lines = [
        ["<s>", "S", "S", "a", "b", "c", "d", "</s>"],
        ["<s>", "S", "S", "<unk>", "<unk>", "a", "d", "b", "<unk>", "</s>"],
    ]
    bigrams = {(s[i], s[i + 1]) for s in lines for i in range(len(s) - 1)}
    left = {w: sum(1 for b in bigrams if b[1] == w) for w in m.itos}
    total, types, V, D = len(bigrams), sum(1 for w in left.values() if w), 8, 0.1

    def uni(w):
        return max(left[w] - D, 0) / total + D * types / total / V

    assert _p(m, "c") == pytest.approx(uni("c"), rel=1e-9)  # nltk: 1/8
    assert _p(m, "z") == pytest.approx(uni("z"), rel=1e-9)  # nltk: 1/8
    assert _p(m, "y") == pytest.approx(uni("<unk>"), rel=1e-9)  # nltk: 1/8
    cb = (0.9 + 0.2 * uni("c")) / 2  # nltk: (0.9 + 0.2 * 1/8) / 2
    assert _p(m, "c", ["b"]) == pytest.approx(cb, rel=1e-9)
    assert _p(m, "c", ["a", "b"]) == pytest.approx(0.9 + 0.1 * cb, rel=1e-9)
    assert _p(m, "c", ["z", "b"]) == pytest.approx(cb, rel=1e-9)


# -- KenLM ---------------------------------------------------------------------------------------
KENLM_ARPA = Path(__file__).parent / "kenlm_test.arpa"

# (test, start, [(word, expected log10 p), ...]): each word appended to the state in turn;
# a row ("RESET", name) goes back to a saved state. From lm/model_test.cc.
KENLM_QUERIES = {
    "Starters": [
        ("<s>", [("looking", -0.4846522)]),
        ("<s>", [(",", -1.383514 + -0.4149733)]),  # , probability plus <s> backoff
        ("<s>", [("this_is_not_found", -1.995635 + -0.4149733)]),
    ],
    "Continuation": [
        ("<s>", [("looking", -0.484652), ("on", -0.348837), ("a", -0.0155266),
                 ("little", -0.00306122), ("the", -4.04005), ("biarritz", -1.9889),
                 ("not_found", -2.29666), ("more", -1.20632 - 20.0), (".", -0.51363),
                 ("</s>", -0.0191651)]),
        ("<s>", [("looking", None), ("on", None), ("a", None), ("little", None),
                 ("more", -0.00181395), ("loin", -0.0432557)]),
    ],
    "Blanks": [
        ("", [("also", -1.687872), ("would", -2), ("consider", -3), ("higher", -4),
              ("looking", -5)]),
        ("", [("also", None), ("would", None), ("consider", None),
              ("not_found", -1.995635 - 7.0 - 0.30103)]),
        ("", [("higher", -1.509559), ("looking", -1.285941 - 0.30103),
              ("not_found", -1.995635 - 0.4771212)]),
        ("", [("higher", None), ("looking", None), ("consider", -1.687872 - 0.4771212)]),
        ("", [("would", -1.687872), ("consider", -1.687872 - 0.30103),
              ("higher", -1.509559 - 0.30103), ("looking", -1.285941 - 0.30103)]),
    ],
    "Unknowns": [
        ("", [("not_found", -1.995635), ("not_found2", -15.0), ("not_found3", -15.0 - 2.0)]),
        ("", [("not_found", None), ("however", -4), ("not_found3", -6)]),
    ],
    "MinimalState": [
        ("", [("baz", -6.535897)]),
        ("", [("foo", -3.141592), ("bar", -6.0), ("bar", -2.718281 + 3.0)]),
        ("", [("to", -1.687872), ("look", -0.2922095), ("a", -7)]),
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def kenlm_test_model():
    return read_arpa(KENLM_ARPA)


@pytest.mark.parametrize("test", list(KENLM_QUERIES))
def test_kenlm_model_test_queries(kenlm_test_model, test):
    """Each word's log10 p after the words before it, from ``<s>`` (BeginSentenceState) or
    from no context at all (NullContextState: a short context uses the lower orders)."""
    m = kenlm_test_model
    for start, words in KENLM_QUERIES[test]:
        state = m.begin(1, bos=start == "<s>")
        for word, expected in words:
            lp, state = m.extend(state, [m.stoi.get(word, m.unk_id)])
            if expected is not None:
                assert lp[0] / math.log(10) == pytest.approx(expected, rel=1e-5), (test, word)


def test_kenlm_test_arpa_agrees_with_the_kenlm_module(kenlm_test_model):
    """The same file through KenLM's own Python module, sentence scores and full scores."""
    kenlm = pytest.importorskip("kenlm", reason="the kenlm module did not install here")
    ken = kenlm.Model(str(KENLM_ARPA))
    m = kenlm_test_model
    for sentence in [
        "looking on a little more loin",
        "also would consider higher looking",
        "the biarritz not_found more .",
        "foo bar bar baz",
        "",
    ]:
        for bos in (True, False):
            for eos in (True, False):
                expect = ken.score(sentence, bos=bos, eos=eos)
                assert m.score(sentence, bos=bos, eos=eos) == pytest.approx(expect, abs=1e-4)


def test_score_prints_what_kenlms_query_prints(tmp_path, capsys):
    """``score log10=true tokens=true`` of an ARPA file: every token's log10 probability and
    n-gram length, as ``kenlm.Model.full_scores`` (what KenLM's ``query`` prints) gives them."""
    kenlm = pytest.importorskip("kenlm", reason="the kenlm module did not install here")
    from conftest import make_config

    from seqlm.commands import score

    sentences = ["looking on a little more loin", "also would consider higher looking", "foo bar"]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n")
    score.run(
        make_config(
            "score",
            [f"ckpt={KENLM_ARPA}", f"input={tmp_path / 'in.txt'}", "log10=true", "tokens=true"],
        )
    )
    printed = capsys.readouterr().out.split("\n\n")[1].strip().splitlines()[1:]
    ken = kenlm.Model(str(KENLM_ARPA))
    expected = [
        (n, lp, length) for n, s in enumerate(sentences, 1) for lp, length, _ in ken.full_scores(s)
    ]
    assert len(printed) == len(expected)
    for row, (n, lp, length) in zip(printed, expected):
        line, _, _, ours, ours_length = row.split("\t")
        assert int(line) == n and int(ours_length) == length
        assert float(ours) == pytest.approx(lp, abs=1e-4)
