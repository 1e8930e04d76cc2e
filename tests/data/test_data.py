"""Vocabulary, tokenizers, the built-in grammar, and the batch layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqlm.data import agreement
from seqlm.data.batching import IGNORE, EvalStream, SentenceBatches, TrainStream
from seqlm.data.tokenize import char, get_tokenizer
from seqlm.data.vocab import EOS, UNK, Vocab
from seqlm.errors import SeqlmError


# -- vocabulary ----------------------------------------------------------------------------
def test_vocab_from_train_only_with_unk_and_eos():
    train = [["a", "b", "a"], ["c", "a", "b"]]
    v = Vocab.build(train)
    assert v.itos == [UNK, EOS, "a", "b", "c"]  # by frequency, ties by first appearance
    assert v.to_array([["a", "zzz"], []]).tolist() == [2, 0, 1, 1]  # unseen -> <unk>; <eos>
    assert Vocab.build(train, min_freq=2).itos == [UNK, EOS, "a", "b"]
    assert Vocab.build(train, max_size=3).itos == [UNK, EOS, "a"]


def test_one_pass_vocabulary_equals_counting_with_a_counter():
    from collections import Counter

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)] + [UNK, EOS]
    lines = [list(rng.choice(words, rng.integers(0, 12))) for _ in range(2000)]
    for min_freq, max_size in ((1, None), (3, None), (1, 50), (2, 120)):
        counts = Counter(w for ln in lines for w in ln if w not in (UNK, EOS))
        kept = [w for w, c in counts.most_common() if c >= min_freq]  # ties: first seen
        itos = [UNK, EOS, *(kept if max_size is None else kept[: max_size - 2])]
        vocab, ids = Vocab.build_encoded(iter(lines), min_freq, max_size)
        assert vocab.itos == itos
        stoi = {w: i for i, w in enumerate(itos)}
        expected = [i for ln in lines for i in [*(stoi.get(w, 0) for w in ln), 1]]
        assert ids.dtype == np.int32 and ids.tolist() == expected
        assert vocab.to_array(iter(lines)).tolist() == expected


def test_vocab_round_trip_and_digest(tmp_path):
    v = Vocab.build([["x", "y", "<unk>"]])
    assert "<unk>" not in v.itos[2:]  # a corpus' literal <unk> is our <unk>
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v
    assert Vocab.build([["y", "x"]]).digest() != v.digest()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SeqlmError, match="bad.json: not a seqlm vocabulary"):
        Vocab.load(tmp_path / "bad.json")


@pytest.mark.parametrize("content", ["[0, 1, 2]", '{"a": 1}', '["<eos>", "<unk>"]', "[1"])
def test_a_vocabulary_file_must_hold_distinct_strings_specials_first(tmp_path, content):
    (tmp_path / "vocab.json").write_text(content)
    with pytest.raises(SeqlmError, match="vocab.json: not a seqlm vocabulary"):
        Vocab.load(tmp_path / "vocab.json")


def test_tokenizers():
    assert get_tokenizer("whitespace")(" the  cat \t sat ") == ["the", "cat", "sat"]
    assert get_tokenizer("nltk")("I can't go.") == ["I", "ca", "n't", "go", "."]
    assert char("我的 手机") == ["我", "的", "▁", "手", "机"]
    with pytest.raises(SeqlmError, match="data.tokenizer='bpe' is not one of"):
        get_tokenizer("bpe")


# -- the grammar ---------------------------------------------------------------------------
def parse_logprob(words: list[str], g: agreement.Grammar) -> tuple[float, int]:
    """An independent recogniser: the total probability of *all* derivations of `words`, and
    how many there are, by exhaustive search over the grammar's rules."""
    nouns = {w: (i, n) for i, pair in enumerate(agreement.NOUNS) for n, w in enumerate(pair)}
    vt = {w: n for pair in agreement.VERBS_T for n, w in enumerate(pair)}
    vi = {w: n for pair in agreement.VERBS_I for n, w in enumerate(pair)}
    lp_noun = math.log(1 / 2) + math.log(1 / len(agreement.NOUNS))
    lp_adj = math.log(g.p_adj / len(agreement.ADJECTIVES))

    def nps(i):  # all ways to read `the (ADJ)? NOUN` at i -> (end, number, logprob)
        if i < len(words) and words[i] == "the":
            if i + 1 < len(words) and words[i + 1] in nouns:
                yield i + 2, nouns[words[i + 1]][1], math.log(1 - g.p_adj) + lp_noun
            if (
                i + 2 < len(words)
                and words[i + 1] in agreement.ADJECTIVES
                and words[i + 2] in nouns
            ):
                yield i + 3, nouns[words[i + 2]][1], lp_adj + lp_noun

    def chunks(i, head):  # one chunk at i -> (end, logprob)
        if i < len(words) and words[i] in agreement.PREPOSITIONS:
            for j, _, lp in nps(i + 1):
                yield j, math.log(g.p_pp / len(agreement.PREPOSITIONS)) + lp
        if i < len(words) and words[i] == "that":
            for j, num, lp in nps(i + 1):
                if j < len(words) and vt.get(words[j]) == num:
                    yield j + 1, math.log(g.p_orc / len(agreement.VERBS_T)) + lp
            if i + 1 < len(words) and vt.get(words[i + 1]) == head:
                for j, _, lp in nps(i + 2):
                    yield j, math.log((1 - g.p_pp - g.p_orc) / len(agreement.VERBS_T)) + lp

    def nests(i):  # every (whom NP)^n VERB_t^n at i, n = 0..nesting -> (end, logprob)
        if not g.nesting:
            yield i, 0.0
            return
        opened = [(i, [], -math.log(g.nesting + 1))]  # (position, numbers of the open nouns, lp)
        for depth in range(g.nesting + 1):
            for j, stack, lp in opened:  # close all `depth` relatives here, innermost first
                end, ok = j, True
                for num in reversed(stack):
                    ok = ok and end < len(words) and vt.get(words[end]) == num
                    end += 1
                if ok:
                    yield end, lp + depth * math.log(1 / len(agreement.VERBS_T))
            if depth < g.nesting:
                opened = [
                    (e, [*stack, num], lp + lp_np)
                    for j, stack, lp in opened
                    if j < len(words) and words[j] == "whom"
                    for e, num, lp_np in nps(j + 1)
                ]

    def endings(j0, num, lp0):  # CHUNK^k VP to the end of the line -> logprob of each way
        frontier = [(j0, lp0)]
        for k in range(g.max_chunks + 1):
            for j, lp in frontier:
                lp_k = lp - math.log(g.max_chunks + 1)
                if j < len(words) and vi.get(words[j]) == num and j + 1 == len(words):
                    yield lp_k + math.log((1 - g.p_transitive) / len(agreement.VERBS_I))
                if j < len(words) and vt.get(words[j]) == num:
                    for e, _, lp_o in nps(j + 1):
                        if e == len(words):
                            yield lp_k + math.log(g.p_transitive / len(agreement.VERBS_T)) + lp_o
            if k < g.max_chunks:
                frontier = [(e, lp + lpc) for j, lp in frontier for e, lpc in chunks(j, num)]

    ways = [
        lp
        for j_subj, num, lp_subj in nps(0)
        for j0, lp_nest in nests(j_subj)
        for lp in endings(j0, num, lp_subj + lp_nest)
    ]
    total = sum(math.exp(lp) for lp in ways)
    return math.log(total) if total else -math.inf, len(ways)


@pytest.mark.parametrize("max_chunks, nesting", [(0, 0), (3, 0), (6, 0), (0, 3), (2, 4)])
def test_grammar_is_unambiguous_and_its_probabilities_are_exact(max_chunks, nesting):
    g = agreement.Grammar(max_chunks=max_chunks, nesting=nesting)
    for s in agreement.generate(g, 3000, seed=max_chunks):
        lp, derivations = parse_logprob(s.words, g)
        assert derivations == 1, " ".join(s.words)
        assert s.logprob == pytest.approx(lp, abs=1e-9)


def test_grammar_agreement_and_distances():
    g = agreement.Grammar()
    sents = agreement.generate(g, 20_000, seed=0)
    singular = {sg for sg, _ in agreement.NOUNS}
    for s in sents:
        subject = s.words[s.verb_index - s.distance]
        verb = s.words[s.verb_index]
        third_sg = {a for a, _ in agreement.VERBS_T + agreement.VERBS_I}
        assert (subject in singular) == (verb in third_sg)
        assert {verb, s.wrong_verb} in [set(p) for p in agreement.VERBS_T + agreement.VERBS_I]
    d = [s.distance for s in sents]
    assert min(d) == 1 and 14 <= max(d) <= 16
    far = [s.distance for s in agreement.generate(agreement.Grammar(max_chunks=12), 50_000, 1)]
    assert max(far) >= 50
    assert len(agreement.vocabulary_words()) > 150


def test_nested_relatives_close_innermost_first():
    """Every verb of a nest agrees with its own noun, read as a stack; the main verb with the
    subject under it."""
    g = agreement.Grammar(max_chunks=0, nesting=3)
    nouns = {w: n for pair in agreement.NOUNS for n, w in enumerate(pair)}
    verbs = {w: n for pair in agreement.VERBS_T + agreement.VERBS_I for n, w in enumerate(pair)}
    depths = set()
    for s in agreement.generate(g, 20_000, seed=4):
        stack, closing, w = [], 0, s.words
        depths.add(w.count("whom"))
        for word in w[: s.verb_index]:  # no chunks: every noun is the subject or in the nest
            if word in nouns:
                stack.append(nouns[word])
            elif word in verbs:
                assert verbs[word] == stack.pop(), " ".join(w)
                closing += 1
        assert stack == [verbs[w[s.verb_index]]] and closing == w.count("whom"), " ".join(w)
    assert depths == {0, 1, 2, 3}
    default = agreement.generate(agreement.Grammar(), 3000, seed=0)
    assert all("whom" not in s.words for s in default)  # nesting=0: the original grammar


def test_bad_grammar_options():
    with pytest.raises(SeqlmError, match="data.nesting=-1 must be an integer >= 0"):
        agreement.Grammar(nesting=-1)
    with pytest.raises(SeqlmError, match="data.max_chunks=-1"):
        agreement.Grammar(max_chunks=-1)
    with pytest.raises(SeqlmError, match="data.p_pp"):
        agreement.Grammar(p_pp=0.8, p_orc=0.3)


# -- batch layouts ---------------------------------------------------------------------------
def _stream(n, seed=0):
    return np.random.default_rng(seed).integers(2, 50, n).astype(np.int32)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_train_streams_are_contiguous_disjoint_and_cover_all_but_the_tail(world):
    ids = _stream(1000)
    full = np.concatenate([[1], ids])
    seen, windows = [], set()
    for rank in range(world):
        ds = TrainStream(ids, 1, batch_size=4, bptt=7, rank=rank, world_size=world)
        windows.add(len(ds))
        got_t = np.concatenate([b["target"].numpy() for b in ds], axis=1)
        got_i = np.concatenate([b["input"].numpy() for b in ds], axis=1)
        idx = ds.target_index.numpy()
        np.testing.assert_array_equal(got_t, full[idx + 1])  # targets are the stream's tokens
        np.testing.assert_array_equal(got_i, full[idx])  # each input is the token before
        assert (np.diff(idx, axis=1) == 1).all()  # rows are contiguous
        seen.append(idx.ravel())
    assert len(windows) == 1  # every rank runs the same number of windows
    allidx = np.concatenate(seen)
    assert len(np.unique(allidx)) == len(allidx)  # disjoint across ranks
    assert len(allidx) == 1000 - 1000 % (4 * world)  # all but the documented tail
    assert ds.dropped == 1000 % (4 * world)


def test_train_stream_resumes_at_the_saved_window_of_the_same_epoch():
    ids = _stream(2000)
    whole = list(TrainStream(ids, 1, batch_size=4, bptt=7))
    ds = TrainStream(ids, 1, batch_size=4, bptt=7)
    ds.trained = 9  # what the data module records as windows are trained
    saved = ds.state_dict()
    assert saved == {"epoch": 0, "next_window": 9}
    again = TrainStream(ids, 1, batch_size=4, bptt=7)
    again.load_state_dict(saved)
    rest = list(again)
    assert [b["window"] for b in rest] == list(range(9, len(whole)))
    for a, b in zip(rest, whole[9:]):
        assert np.array_equal(a["input"], b["input"]) and np.array_equal(a["target"], b["target"])
    other_epoch = TrainStream(ids, 1, batch_size=4, bptt=7)
    other_epoch.set_epoch(1)
    other_epoch.load_state_dict(saved)  # a checkpoint of another epoch: from the start
    assert next(iter(other_epoch))["window"] == 0


def test_variable_bptt_is_seeded_and_covers_the_stream():
    ds = TrainStream(_stream(3000), 1, batch_size=2, bptt=30, variable_bptt=True, seed=5)
    w0 = ds.windows()
    assert sum(n for _, n in w0) == ds.length
    assert len({n for _, n in w0}) > 3 and min(n for _, n in w0[:-1]) >= 5
    ds.set_epoch(1)
    assert ds.windows() != w0
    ds.set_epoch(0)
    assert ds.windows() == w0


@pytest.mark.parametrize("n, batch", [(100, 7), (10, 10), (5, 10), (64, 8)])
def test_eval_stream_scores_every_token_once(n, batch):
    ids = _stream(n, seed=n)
    extra = np.arange(n)
    ds = EvalStream(ids, 1, batch, bptt=6, extras={"pos": extra})
    t = np.concatenate([b["target"].numpy() for b in ds], axis=1)
    i = np.concatenate([b["input"].numpy() for b in ds], axis=1)
    p = np.concatenate([b["pos"].numpy() for b in ds], axis=1)
    keep = t != IGNORE
    assert keep.sum() == n
    np.testing.assert_array_equal(t[keep], ids)  # row-major order is the stream order
    np.testing.assert_array_equal(p[keep], extra)
    prev = np.concatenate([[1], ids[:-1]])
    np.testing.assert_array_equal(i[keep], prev)


def test_eval_stream_rows_split_across_ranks_without_overlap():
    ids = _stream(101)
    full = EvalStream(ids, 1, 10, bptt=8)
    parts = [EvalStream(ids, 1, 10, bptt=8, rows=slice(r, None, 3)) for r in range(3)]
    assert sum(p.tensors["target"].shape[0] for p in parts) == 10
    merged = sorted(np.concatenate([p.tensors["target"].numpy() for p in parts]).tolist())
    assert merged == sorted(full.tensors["target"].numpy().tolist())


@pytest.mark.parametrize("world", [1, 2])
def test_sentence_batches_hold_every_token_once(world):
    lines = [[5, 6, 7], [8], [], [9, 10, 11, 12, 13]] * 5
    ids = Vocab([UNK, EOS, *map(str, range(2, 14))]).to_array(
        [[str(w) for w in ln] for ln in lines]
    )
    targets = []
    for rank in range(world):
        for b in SentenceBatches(ids, 1, 3, shuffle=False, rank=rank, world_size=world):
            inp, tgt = b["input"].numpy(), b["target"].numpy()
            assert inp.shape[1] == tgt.shape[1] + 2
            for row in range(len(tgt)):
                n = (tgt[row] != IGNORE).sum()
                assert inp[row, 0] == 1 and inp[row, n + 1] == 1  # boundaries both sides
                np.testing.assert_array_equal(inp[row, 1 : n + 1], tgt[row, :n])
                targets.extend(tgt[row, :n].tolist())
    assert sorted(targets) == sorted(ids.tolist())


def test_sentence_batches_shuffle_is_seeded_by_epoch():
    # 40 distinct one-word lines, so an order is visible: w <eos>
    ids = np.stack([np.arange(2, 42), np.ones(40, dtype=np.int64)], 1).ravel().astype(np.int32)
    ds = SentenceBatches(ids, 1, 4, shuffle=True, seed=0)

    def order():
        return [int(w) for b in ds for w in b["target"][:, 0]]

    first = order()
    assert len(first) == 40 and sorted(first) == list(range(2, 42))
    assert first == order()  # the same epoch, the same order
    assert first != list(range(2, 42))  # shuffled
    ds.set_epoch(1)
    assert order() != first and sorted(order()) == sorted(first)  # a new epoch, a new order
