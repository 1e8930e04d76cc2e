"""Queries: the log-probability of every token of a stream, vectorised over whole lines, and
the states a decoder steps (``begin``, ``extend``, ``distributions``). A word is scored in one
lookup per order: the longest stored n-gram ending in it, plus the backoff weights of the
longer contexts that missed (additive and MLE models: their own uniform rule).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ngram import counting
from ngram import keys as trie
from ngram.errors import NgramError
from ngram.keys import BOS

LN10 = math.log(10)
SCORE_BLOCK = 1 << 20  # tokens scored at once: whole lines, so blocks do not change a score


@dataclass
class State:
    """Contexts of a batch, as a decoder steps them: ``ctx`` (n, N-1), column j-1 the index of
    the j-gram that ends the context (-1 where none is stored); ``avail`` (n,) the context's
    length, at most N-1 (``<s>`` counts)."""

    ctx: np.ndarray
    avail: np.ndarray

    def __len__(self) -> int:
        return len(self.avail)

    def select(self, index) -> State:
        """Rows ``index`` in order, repeats allowed (a beam split)."""
        i = np.asarray(index, dtype=np.int64)
        return State(self.ctx[i], self.avail[i])

    @staticmethod
    def concat(states: list[State]) -> State:
        return State(
            np.concatenate([s.ctx for s in states]), np.concatenate([s.avail for s in states])
        )


class Queries:
    """``NgramLM``'s scoring of streams and stepping of states."""

    def _extend(self, ctx: np.ndarray, words: np.ndarray) -> list[np.ndarray]:
        """For states ``ctx`` (n, N-1) (column j-1: the index of the j-gram that ends the
        context, -1 where none is stored) and one word each, the index of every k-gram
        ``context + word``, k = 1..N (-1 where not stored). One lookup per order."""
        return [words] + [self._lookup_k(k, ctx[:, k - 2], words) for k in range(2, self.order + 1)]

    def _lookup_k(self, k: int, contexts: np.ndarray, words: np.ndarray) -> np.ndarray:
        """The index of each k-gram ``contexts[i] words[i]`` (a (k-1)-gram index and a word),
        -1 where the context is -1 or the k-gram is not stored."""
        ok = np.flatnonzero(contexts >= 0)
        node = np.full(len(words), -1, dtype=np.int64)
        idx, hit = trie.lookup(self.keys[k - 1], contexts[ok] * self.base + words[ok])
        node[ok[hit]] = idx[hit]
        return node

    def _combine(self, words, ext, ctx, avail, lengths: bool = False):
        """log p(word | context) from the lookups of ``_extend``: the longest stored n-gram
        ``context + word``, plus the backoff weight of each longer context (up to ``avail``,
        the context's length, at most N-1) that missed. ``lengths``: also that n-gram's
        length (KenLM's ``ngram_length``; 0 where an additive model spread its mass)."""
        if self._uniform is not None:
            out, matched = self._combine_uniform(ext, ctx, avail)
            return (out, matched) if lengths else out
        out = np.empty(len(words))
        matched = np.zeros(len(words), dtype=np.int64)
        for k in range(self.order, 0, -1):
            e = ext[k - 1]
            m = np.flatnonzero((matched == 0) & (e >= 0))
            out[m] = self.logp[k - 1][e[m]]
            matched[m] = k
        for j in range(1, self.order):
            use = np.flatnonzero((j >= matched) & (j <= avail))
            out[use] += self._bows(j, ctx[use, j - 1])
        return (out, matched) if lengths else out

    def _bows(self, j: int, nodes: np.ndarray) -> np.ndarray:
        """Log backoff weights of the length-j contexts ``nodes``; a context never stored has
        weight 1, except in stupid backoff, where every step back costs the factor."""
        table = self.logbow[j - 1]
        if not len(table):
            return np.full(len(nodes), self.missing_bow)
        return np.where(nodes >= 0, table[np.maximum(nodes, 0)], self.missing_bow)

    def _combine_uniform(self, ext, ctx, avail) -> np.ndarray:
        """Additive and MLE: the stored estimate for the whole context, else its context's
        left-over mass spread uniformly (1/V for a context never seen; 0 for MLE)."""
        out = np.empty(len(avail))
        matched = np.zeros(len(avail), dtype=np.int64)
        for a in np.unique(avail):
            rows = np.flatnonzero(avail == a)
            e = ext[a][rows]
            out[rows] = self._spread(a, ctx, rows)
            hit = np.flatnonzero(e >= 0)
            out[rows[hit]] = self.logp[a][e[hit]]
            matched[rows[hit]] = a + 1
        return out, matched

    def _spread(self, a: int, ctx: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """log of the uniform share after contexts of length ``a`` (additive and MLE)."""
        V = self.vocab_size
        if self.smoothing == "mle":
            return np.full(len(rows), -np.inf)  # MLE: an unseen event has probability 0
        ctx_keys, gamma = self._uniform[a]
        c = ctx[rows, a - 1] if a else np.zeros(len(rows), np.int64)
        out = np.full(len(rows), -np.log(V))  # a context never seen: 1/V
        cidx, chit = trie.lookup(ctx_keys, c)
        seen = np.flatnonzero(chit & (c >= 0))
        out[seen] = np.log(gamma[cidx[seen]] / V)
        return out

    def score_ids(self, ids: np.ndarray) -> np.ndarray:
        """Natural-log probability of every token of an id stream (lines end with ``eos_id``),
        each predicted from ``<s>`` and the words before it in its line. Vectorised: one
        lookup per order for a block of whole lines (about ``SCORE_BLOCK`` tokens), so that
        the temporaries stay small however long the stream."""
        ids = np.asarray(ids)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise NgramError(f"ids outside the vocabulary 0..{self.vocab_size - 1}")
        return np.concatenate([self._score_block(b) for b in self._line_blocks(ids)])

    def ngram_lengths(self, ids: np.ndarray) -> np.ndarray:
        """For every token of an id stream (as ``score_ids`` reads it), the length of the
        stored n-gram its probability came from (KenLM's ``ngram_length``)."""
        ids = np.asarray(ids)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise NgramError(f"ids outside the vocabulary 0..{self.vocab_size - 1}")
        return np.concatenate([self._score_block(b, True)[1] for b in self._line_blocks(ids)])

    def _line_blocks(self, ids: np.ndarray) -> list[np.ndarray]:
        """The stream cut at line ends into blocks of about ``SCORE_BLOCK`` tokens."""
        if len(ids) <= SCORE_BLOCK:
            return [ids]
        line_ends = np.flatnonzero(ids == self.eos_id) + 1
        wanted = np.arange(SCORE_BLOCK, len(ids), SCORE_BLOCK)
        at = np.searchsorted(line_ends, wanted)  # the first line end at or after each
        cuts = np.unique(line_ends[at[at < len(line_ends)]])
        bounds = [0, *cuts[cuts < len(ids)].tolist(), len(ids)]
        return [ids[a:b] for a, b in zip(bounds, bounds[1:])]

    def _score_block(self, ids: np.ndarray, lengths: bool = False):
        ids = np.asarray(ids, dtype=np.int64)
        stream, line_start = counting.pad_sentences(ids, self.eos_id, self.bos_id)
        depth = np.arange(len(stream)) - line_start  # tokens before each in its line, <s> too
        nodes = [stream]  # the index of the k-gram ending at each position (-1: not stored)
        for k in range(2, self.order + 1):
            prev = np.empty(len(stream), dtype=np.int64)
            prev[0], prev[1:] = -1, nodes[-1][:-1]
            prev[depth < k - 1] = -1
            nodes.append(self._lookup_k(k, prev, stream))
        pos = np.flatnonzero(stream != self.bos_id)[: len(ids)]
        ext = [n[pos] for n in nodes]
        ctx = np.stack([n[pos - 1] for n in nodes[: self.order - 1]], 1) if self.order > 1 else None
        avail = np.minimum(depth[pos], self.order - 1)
        return self._combine(stream[pos], ext, ctx, avail, lengths)

    # -- states: what a decoder steps ----------------------------------------------------------
    def begin(self, n: int = 1, bos: bool = True) -> State:
        """``n`` states at a sentence's start (``bos``: after ``<s>``), or with no context at
        all (the middle of a sentence whose beginning is unknown: lower orders only)."""
        ctx = np.full((n, self.order - 1), -1, dtype=np.int64)
        avail = np.zeros(n, dtype=np.int64)
        if bos and self.order > 1:
            ctx[:, 0], avail[:] = self.bos_id, 1
        return State(ctx, avail)

    def word_logprobs(self, state: State, words) -> np.ndarray:
        """log p(words[b] | state b), natural logs, (n,)."""
        words = self._ids(words, len(state))
        return self._combine(words, self._extend(state.ctx, words), state.ctx, state.avail)

    def advance(self, state: State, words) -> State:
        """The states after each has read ``words[b]``."""
        return self.extend(state, words)[1]

    def extend(self, state: State, words) -> tuple[np.ndarray, State]:
        """(log p(words[b] | state b), the states after them): both from one set of lookups."""
        words = self._ids(words, len(state))
        ext = self._extend(state.ctx, words)
        lp = self._combine(words, ext, state.ctx, state.avail)
        ctx = np.stack(ext[: self.order - 1], 1) if self.order > 1 else state.ctx
        return lp, State(ctx, np.minimum(state.avail + 1, self.order - 1))

    # -- one word at a time: decoders that call once per hypothesis and token ------------------
    def score_one(self, ctx: tuple, avail: int, word: int) -> tuple[float, tuple, int]:
        """``extend`` of one state and one word without a numpy call: (log p(word | state),
        the next state's ``ctx`` and ``avail``), a state being one row of ``State`` as a tuple
        and an int (``begin_one``). A binary search per order over the tables' memory
        (``bisect`` on memory views), for a Python decoder that calls the LM once per token;
        additive and MLE models go through ``extend``."""
        N = self.order
        if self._uniform is not None:
            lp, nxt = self.extend(State(np.asarray([ctx]), np.asarray([avail])), [word])
            return float(lp[0]), tuple(int(x) for x in nxt.ctx[0]), int(nxt.avail[0])
        keys, children, logp, logbow, bow_sizes = self._views()
        base = self.base
        ext = [word]
        for k in range(1, N):  # the (k+1)-gram: context node ctx[k-1], then the word
            c = ctx[k - 1]
            node = -1
            if c >= 0:  # a binary search among the context's children only
                lo, hi = children[k][c], children[k][c + 1]
                if lo < hi:
                    key = c * base + word
                    table = keys[k]
                    i = bisect_left(table, key, lo, hi)
                    if i < hi and table[i] == key:
                        node = i
            ext.append(node)
        matched = N
        while ext[matched - 1] < 0:  # unigrams cover the vocabulary: the loop ends by 1
            matched -= 1
        out = logp[matched - 1][ext[matched - 1]]
        for j in range(matched, min(avail, N - 1) + 1):
            node = ctx[j - 1]
            out += logbow[j - 1][node] if node >= 0 and bow_sizes[j - 1] else self.missing_bow
        return out, tuple(ext[: N - 1]), min(avail + 1, N - 1)

    def begin_one(self, bos: bool = True) -> tuple[tuple, int]:
        """``begin(1)`` as ``score_one``'s (ctx, avail)."""
        s = self.begin(1, bos)
        return tuple(int(x) for x in s.ctx[0]), int(s.avail[0])

    def _views(self):
        """The tables as memory views (Python ints and floats on indexing, no copy), and for
        each order k > 1 where each (k-1)-gram's children start in the k-gram table (keys are
        ``context * base + word``, sorted: a context's children are one run), built once."""
        if getattr(self, "_memory_views", None) is None:

            def view(a, fmt):
                a = np.ascontiguousarray(a)
                return memoryview(a).cast("B").cast(fmt) if len(a) else memoryview(b"").cast(fmt)

            starts = [view(np.zeros(1, np.int64), "q")]
            for k in range(1, self.order):
                bounds = np.arange(len(self.keys[k - 1]) + 1, dtype=np.int64) * self.base
                starts.append(view(np.searchsorted(self.keys[k], bounds).astype(np.int64), "q"))
            self._memory_views = (
                [view(k.astype(np.int64, copy=False), "q") for k in self.keys],
                starts,
                [view(p.astype(np.float64, copy=False), "d") for p in self.logp],
                [view(b.astype(np.float64, copy=False), "d") for b in self.logbow],
                [len(b) for b in self.logbow],
            )
        return self._memory_views

    def distributions(self, state: State) -> np.ndarray:
        """(n, V): log p(w | state b) for every vocabulary id w, without a lookup per word:
        the unigrams with each state's backoff weights, overwritten order by order by the
        stored n-grams of each state's contexts (one contiguous run of a sorted table)."""
        n, V, N, B = len(state), self.vocab_size, self.order, self.base
        ctx, avail = state.ctx, state.avail
        if self._uniform is not None:
            return self._distributions_uniform(ctx, avail)
        tail = np.zeros((n, N + 1))  # tail[:, k]: backoff weights of contexts k .. avail
        for j in range(N - 1, 0, -1):
            use = j <= avail
            tail[:, j] = tail[:, j + 1] + np.where(use, self._bows(j, ctx[:, j - 1]), 0.0)
        out = self.logp[0][None, :V] + tail[:, 1][:, None]
        for k in range(2, N + 1):
            rows, idx = self._runs(k, ctx[:, k - 2])
            out[rows, self.keys[k - 1][idx] % B] = self.logp[k - 1][idx] + tail[rows, k]
        return out

    def _runs(self, k: int, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, index) of every stored k-gram whose context is ``contexts[row]``."""
        rows = np.flatnonzero(contexts >= 0)
        table = self.keys[k - 1]
        lo = np.searchsorted(table, contexts[rows] * self.base)
        hi = np.searchsorted(table, (contexts[rows] + 1) * self.base)
        sizes = hi - lo
        starts = np.repeat(lo - np.cumsum(sizes) + sizes, sizes)
        return np.repeat(rows, sizes), starts + np.arange(int(sizes.sum()))

    def _distributions_uniform(self, ctx, avail) -> np.ndarray:
        V, B = self.vocab_size, self.base
        out = np.empty((len(avail), V))
        for a in np.unique(avail):
            rows = np.flatnonzero(avail == a)
            if a == 0:
                out[rows] = self.logp[0][None, :V]
                continue
            out[rows] = self._spread(a, ctx, rows)[:, None]
            sub, idx = self._runs(a + 1, ctx[rows, a - 1])
            out[rows[sub], self.keys[a][idx] % B] = self.logp[a][idx]
        return out

    def state_after(self, context: Iterable[int], bos: bool = True) -> State:
        """One state that has read ``context`` (ids), after ``<s>`` if ``bos``."""
        state = self.begin(1, bos)
        for w in list(context)[-(self.order - 1) :] if self.order > 1 else []:
            state = self.advance(state, [w])
        return state

    def _ids(self, words, n: int) -> np.ndarray:
        words = np.asarray(words, dtype=np.int64).reshape(-1)
        if len(words) != n:
            raise NgramError(f"{len(words)} words for {n} states")
        if len(words) and (words.min() < 0 or words.max() >= self.vocab_size):
            raise NgramError(f"ids outside the vocabulary 0..{self.vocab_size - 1}")
        return words

    def next_logprobs(self, context: list[int], at_start: bool = True) -> np.ndarray:
        """log p(w | context) for every vocabulary id w. ``at_start``: the context follows
        ``<s>`` (a sentence's first words); else it is taken from the middle of a sentence:
        only its own words are context, and a context shorter than order - 1 uses the lower
        orders, as backoff and interpolation define them."""
        return self.distributions(self.state_after(context, at_start))[0]

    def logprob(self, word: str, context: Iterable[str] = ()) -> float:
        """log p(word | context) for strings. A context that starts with ``<s>`` is a
        sentence's beginning; otherwise it is read as the middle of a sentence."""
        stoi = self.stoi
        ctx = list(context)
        at_start = bool(ctx) and ctx[0] == BOS
        ids = [stoi.get(w, self.unk_id) for w in (ctx[1:] if at_start else ctx)]
        state = self.state_after(ids, at_start)
        return float(self.word_logprobs(state, [stoi.get(word, self.unk_id)])[0])

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 p of a sentence of words split at white space, as KenLM's Python ``score``:
        from ``<s>`` if ``bos`` (else from no context), ``</s>`` predicted if ``eos``; a word
        outside the vocabulary is ``<unk>``. Every other method here speaks natural logs."""
        stoi = self.stoi
        ids = [stoi.get(w, self.unk_id) for w in sentence.split()]
        if eos:
            ids.append(self.eos_id)
        state, total = self.begin(1, bos), 0.0
        for w in ids:
            lp, state = self.extend(state, [w])
            total += float(lp[0])
        return total / LN10

    def perplexity(self, ids: np.ndarray) -> float:
        if not self.normalized:
            raise NgramError(
                "stupid backoff gives unnormalised scores, not probabilities: it has no perplexity"
            )
        lp = self.score_ids(ids)
        return math.exp(-lp.mean())
