"""``NgramLM``: an n-gram model of any order, fitted from text or read from ARPA.

A fitted model is kept in backoff form, as in an ARPA file: for every stored n-gram its full
(interpolated) log-probability, for every stored context its log backoff weight. A word is
then scored in one vectorised pass per order: the longest stored n-gram ending in it, plus the
backoff weights of the longer contexts that missed. Additive and MLE models, which spread
their left-over mass uniformly rather than over lower orders, are scored by their own rule.
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ngram import counting
from ngram import keys as trie
from ngram import smoothing as sm
from ngram.errors import NgramError
from ngram.files import written

UNK, EOS, BOS = "<unk>", "</s>", "<s>"
ESTIMATE_BYTES_PER_NGRAM = 2048  # ~120 bytes of temporaries per n-gram of a smoothing block
FORMAT = 2  # .npz layout: 2 = trie keys (ngram.keys); 1 = packed keys, converted on load
LN10 = math.log(10)
SCORE_BLOCK = 1 << 20  # tokens scored at once: whole lines, so blocks do not change a score


LARGE = 1 << 22  # tokens or n-grams from which counting, reading and writing show a bar


def progress_bar(what: str, total: int, unit: str, work: int):
    """A progress bar (shown on a terminal) when ``work`` (tokens, n-grams) is large, else
    None."""
    if work < LARGE:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a nicety; numpy is the only requirement
        return None
    return tqdm(total=total, desc=what, unit=unit, leave=False, disable=None)


class NgramLM:
    """Ids ``0 .. V-1`` are the vocabulary (``unk_id``, ``eos_id`` among them); id ``V`` is
    ``<s>``. ``tables[k-1]`` holds order k: sorted keys, log-probs, log backoff weights."""

    def __init__(
        self,
        itos: list[str],
        order: int,
        smoothing: str,
        unk_id: int = 0,
        eos_id: int = 1,
        normalized: bool = True,
    ):
        self.itos, self.order, self.smoothing = list(itos), order, smoothing
        self.unk_id, self.eos_id, self.bos_id = unk_id, eos_id, len(itos)
        self.base = len(itos) + 1
        self.normalized = normalized
        self.keys: list[np.ndarray] = []
        self.logp: list[np.ndarray] = []
        self.logbow: list[np.ndarray] = []
        self.info: dict = {}
        self._uniform: list[tuple] | None = None  # (ctx indices, gamma) for additive/MLE
        self.missing_bow = 0.0  # log weight of a context never stored (stupid backoff: log 0.4)
        self._stoi: dict[str, int] | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    # -- fitting -----------------------------------------------------------------------------
    @classmethod
    def fit_ids(
        cls,
        ids: np.ndarray,
        itos: list[str],
        order: int = 3,
        smoothing: str = "modified_kn",
        unk_id: int = 0,
        eos_id: int = 1,
        max_memory: int | str | None = None,
        prune: list[int] | None = None,
        prune_entropy: float | None = None,
        **params,
    ) -> NgramLM:
        """Fit on an id stream whose lines end with ``eos_id`` (seqlm's layout).

        ``prune``: count thresholds per order, as lmplz's ``--prune``: ``[0, 1, 1]`` drops every
        2- and 3-gram seen once. ``prune_entropy``: Stolcke's threshold (``prune_entropy``).

        ``max_memory`` (bytes, or ``500M``, ``2G``; default ``counting.default_budget()``)
        bounds the counting: sorted runs spill to ``$TMPDIR`` and are merged, and each order is
        smoothed in blocks of whole contexts. Beside it the process holds the id stream and the
        model itself (24 bytes a stored n-gram). Any budget gives the same model, bit for bit."""
        if not isinstance(order, int) or order < 1:
            raise NgramError(f"order={order!r} must be an integer >= 1")
        if smoothing not in sm.METHODS:
            raise NgramError(f"smoothing={smoothing!r} is not one of {', '.join(sm.METHODS)}")
        params = check_params(smoothing, params)
        prune = check_prune(prune, order, smoothing)
        V = len(itos)
        trie.check_vocabulary(V)
        model = cls(
            itos,
            order,
            smoothing,
            unk_id,
            eos_id,
            normalized=smoothing != "stupid_backoff",
        )
        budget = (
            counting.default_budget()
            if max_memory is None
            else counting.parse_size(max_memory, "max_memory")
        )
        ids = np.asarray(ids)
        if len(ids) == 0:
            raise NgramError("no tokens to count")
        if ids[-1] != eos_id:
            ids = np.append(ids, eos_id)  # a last line without its end marker

        def bar(chunks: int):
            return progress_bar(f"counting {order}-grams", chunks, "chunk", len(ids))

        raw = counting.count_ngrams(ids, order, model.base, eos_id, model.bos_id, budget, bar)
        if smoothing == "stupid_backoff":
            model.missing_bow = math.log(params["backoff"])
        model._estimate(raw, params, max(1024, budget // ESTIMATE_BYTES_PER_NGRAM), prune)
        if prune is not None:
            model.info["prune"] = list(prune)
        if prune_entropy is not None:
            model.prune_entropy(prune_entropy)
        return model

    @classmethod
    def fit(
        cls,
        sentences: Iterable[list[str]],
        order: int = 3,
        smoothing: str = "modified_kn",
        **params,
    ) -> NgramLM:
        """Fit on tokenized sentences. The vocabulary is every word seen, plus ``<unk>`` (for
        words never seen) and ``</s>``; ``<s>`` is context only."""
        itos, stoi, ids = [UNK, EOS], {UNK: 0, EOS: 1}, []
        for sent in sentences:
            for w in sent:
                if w not in stoi:
                    stoi[w] = len(itos)
                    itos.append(w)
                ids.append(stoi[w])
            ids.append(1)
        if BOS in stoi:
            raise NgramError(f"the text holds the reserved token {BOS}")
        return cls.fit_ids(np.asarray(ids, dtype=np.int64), itos, order, smoothing, **params)

    def _estimate(
        self,
        raw: list[tuple[np.ndarray, np.ndarray]],
        params: dict,
        block: int,
        prune: tuple[int, ...] | None = None,
    ) -> None:
        """Counts -> backoff-form tables, order by order; each order of two or more words in
        blocks of about ``block`` n-grams that never split a context (a context's mass is summed
        in one ``bincount``, so the result does not depend on the block size). ``prune``: the
        count thresholds per order (``lmplz --prune``), applied as the tables are estimated."""
        N, V, base, method = self.order, self.vocab_size, self.base, self.smoothing
        # Unigram table: every vocabulary word (seen or not) and <s>, so every id has a row.
        all_ids = np.arange(V + 1, dtype=np.int64)
        uni = np.zeros(V + 1, dtype=np.int64)
        uni[raw[0][0]] = raw[0][1]
        keys_of, counts = [all_ids], [uni]
        for k in range(1, N):  # one order at a time, so only one order is held twice
            keys, c = raw[k]
            raw[k] = None  # the caller's list too: its int64 counts go now
            keys_of.append(keys)
            counts.append(_narrow(c))
            del keys, c
        # each n-gram's suffix in the order below: what interpolation and continuation read
        suffix = _suffix_tables(keys_of, base, block) if method not in sm.UNIFORM else None
        # an n-gram is kept when its raw count is above its order's threshold (lmplz compares
        # raw counts at every order, before the adjusted counts replace them)
        keep = [None] + [
            counts[k - 1] > prune[k - 1] if prune and prune[k - 1] else None
            for k in range(2, N + 1)
        ]
        if method in sm.CONTINUATION:
            # Lower orders count distinct left extensions, except n-grams that start with <s>
            # (nothing can precede them): KenLM's adjusted counts, Chen & Goodman sec. 3.
            starts_bos = [all_ids == self.bos_id]
            for k in range(2, N):
                starts_bos.append(starts_bos[-1][keys_of[k - 1] // base])
            for k in range(N - 1, 0, -1):
                cont = counting.continuation_counts(suffix[k], len(keys_of[k - 1]))
                counts[k - 1] = _narrow(np.where(starts_bos[k - 1], counts[k - 1], cont))
            del starts_bos
        if method in sm.UNIFORM:
            return self._estimate_uniform(keys_of, counts, params)

        prev_logp = None  # log p of the order below, aligned with its keys
        for k in range(1, N + 1):
            keys, c = keys_of[k - 1], counts[k - 1]
            if k == 1:
                logp_k = self._unigrams(keys, c, params)
            else:
                logp_k = self._order(
                    k, keys, c, params, prev_logp, block, suffix[k - 1], keep[k - 1]
                )
            counts[k - 1] = None  # smoothed: the counts are no longer needed
            self.keys.append(keys)
            self.logp.append(logp_k)
            self.logbow.append(np.zeros(len(keys)))
            prev_logp = logp_k
        if any(m is not None for m in keep):
            self._drop(keep)

    def _unigrams(self, keys: np.ndarray, c: np.ndarray, params: dict) -> np.ndarray:
        """Log-probabilities of every id, ``<s>`` (log p = 0, as KenLM) included."""
        method, V = self.smoothing, self.vocab_size
        predicted = keys % self.base != self.bos_id  # <s> is never predicted
        cp = c[predicted]
        # estimate over the words seen; unseen ones (count 0) get only the uniform share
        seen = cp > 0
        kp = keys[predicted]
        st = sm.OrderStats(
            kp[seen], cp[seen], np.zeros(1, np.int64), np.zeros(int(seen.sum()), np.int64)
        )
        a_seen, gamma, self.info["order1"] = sm.estimate(method, st, 1, V, params)
        alpha = np.zeros(len(kp))
        alpha[seen] = a_seen
        # interpolated with the uniform p_0 = 1/V; stupid backoff: S(w) = c(w) / N
        p = alpha if method == "stupid_backoff" else alpha + gamma[0] / V
        logp = np.zeros(len(keys))
        with np.errstate(divide="ignore"):
            logp[predicted] = np.log(p)
        return logp

    def _order(self, k, keys, c, params, prev_logp, block, suffix, keep) -> np.ndarray:
        """Log-probabilities of the k-grams (k >= 2), and the backoff weights of their
        contexts written into order k-1. ``suffix``: each k-gram's suffix in order k-1;
        ``keep``: None, or which k-grams survive pruning (a pruned n-gram's discounted mass
        joins its context's backoff mass, as lmplz does, so the model still sums to one)."""
        method, base = self.smoothing, self.base
        disc = sm.discounts(method, c, k, params)
        self.info[f"order{k}"] = dict(disc)
        logp = np.empty(len(keys))
        for a, b in counting.context_blocks(keys, base, block):
            kp = keys[a:b]
            ctx_keys, ctx_index = counting.group_by_context(kp, base)
            st = sm.OrderStats(kp, c[a:b], ctx_keys, ctx_index)
            alpha, gamma, _ = sm.estimate(method, st, k, self.vocab_size, params, disc)
            if method == "stupid_backoff":  # seen: the relative frequency alone
                p = alpha
            else:
                if keep is not None:
                    gone = ~keep[a:b]
                    gamma = gamma + np.bincount(
                        ctx_index[gone], weights=alpha[gone], minlength=len(ctx_keys)
                    )
                p = alpha + gamma[ctx_index] * np.exp(prev_logp[suffix[a:b]])
            # gamma(h) is the backoff weight of the context h, the n-gram ctx_keys of order k-1
            with np.errstate(divide="ignore"):
                self.logbow[k - 2][ctx_keys] = np.log(gamma)
                logp[a:b] = np.log(p)
        return logp

    def _estimate_uniform(self, keys_of, counts, params) -> None:
        """Additive and MLE: the order-N estimate for each full context, uniform elsewhere."""
        N, V, base = self.order, self.vocab_size, self.base
        self._uniform = []
        for k in range(1, N + 1):
            keys, c = keys_of[k - 1], counts[k - 1]
            predicted = keys % base != self.bos_id
            kp, cp = keys[predicted], c[predicted]
            if k == 1:
                ctx_keys, ctx_index = np.zeros(1, np.int64), np.zeros(len(kp), np.int64)
            else:
                ctx_keys, ctx_index = counting.group_by_context(kp, base)
            st = sm.OrderStats(kp, cp, ctx_keys, ctx_index)
            alpha, gamma, _ = sm.estimate(self.smoothing, st, k, V, params)
            logp = np.zeros(len(keys))  # <s> keeps its row (log p 0): ids index the unigrams
            with np.errstate(divide="ignore"):
                logp[predicted] = np.log(alpha + gamma[ctx_index] / V)
            self.keys.append(keys)
            self.logp.append(logp)
            self._uniform.append((ctx_keys, gamma))
            self.logbow.append(np.zeros(len(keys)))

    def _drop(self, keep: list[np.ndarray | None]) -> None:
        """Remove the n-grams ``keep`` marks False (none of order 1), renumbering the
        contexts of the order above. A kept n-gram's context must be kept."""
        B = self.base
        for k in range(self.order, 1, -1):
            if keep[k - 1] is not None:
                m = keep[k - 1]
                self.keys[k - 1], self.logp[k - 1] = self.keys[k - 1][m], self.logp[k - 1][m]
                self.logbow[k - 1] = self.logbow[k - 1][m]
        for k in range(2, self.order + 1):
            lower = keep[k - 2]
            if lower is None:
                continue
            renumber = np.cumsum(lower) - 1
            keys = self.keys[k - 1]
            ctx = keys // B
            if not lower[ctx].all():
                raise NgramError(f"pruning removed the context of a kept {k}-gram")
            self.keys[k - 1] = renumber[ctx] * B + keys % B

    # -- pruning -----------------------------------------------------------------------------
    def entropy_deltas(self, k: int) -> np.ndarray:
        """For each stored k-gram ``h w`` (k >= 2), the relative entropy D(p || p') that removing
        it alone would cost, weighted by the probability of its history (Stolcke 1998): ``p'``
        is the model without ``h w``, whose backoff weight of ``h`` is recomputed so that it
        still sums to one. In nats; the perplexity grows by the factor ``exp(delta)``."""
        if not 2 <= k <= self.order or self._uniform is not None or not self.normalized:
            raise NgramError(
                f"entropy pruning needs a normalised backoff model and 2 <= k <= {self.order}"
            )
        B = self.base
        marg = self._history_probs(k - 1)
        keys = self.keys[k - 1]
        ctx = keys // B
        suffix = self._suffixes(k)
        lp, lq = self.logp[k - 1], self.logp[k - 2][suffix]
        p, q = np.exp(lp), np.exp(lq)
        n_ctx = len(self.keys[k - 2])
        num = (1 - np.bincount(ctx, p, n_ctx))[ctx]  # mass left to back off, per context
        den = (1 - np.bincount(ctx, q, n_ctx))[ctx]
        log_bow = self.logbow[k - 2][ctx]
        log_new_bow = np.log(num + p) - np.log(den + q)
        return -marg[ctx] * (p * (lq + log_new_bow - lp) + num * (log_new_bow - log_bow))

    def _history_probs(self, k: int) -> np.ndarray:
        """P(h) of every stored k-gram h, by the chain rule of the model itself (a history that
        starts with ``<s>`` is given it: P(<s>) = 1)."""
        marg = np.exp(self.logp[0])
        for j in range(2, k + 1):
            marg = marg[self.keys[j - 1] // self.base] * np.exp(self.logp[j - 1])
        return marg

    def _suffixes(self, k: int) -> np.ndarray:
        suffix = None
        for j in range(2, k + 1):
            suffix = trie.suffixes(self.keys[j - 1], suffix, self.keys[j - 2], self.base)
        return suffix

    def prune_entropy(self, threshold: float) -> None:
        """Stolcke's entropy pruning, as SRILM's ``-prune``: from the highest order down, remove
        every n-gram whose removal raises the perplexity by a factor under ``1 + threshold``
        (each judged against the model as it stands before its own order is pruned), then
        recompute the backoff weights of the contexts that lost n-grams. An n-gram that is the
        context or the suffix of a kept longer one is kept, so that every lookup stays
        exact."""
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not threshold >= 0
        ):
            raise NgramError(f"prune_entropy={threshold!r} must be a number >= 0")
        if self._uniform is not None or not self.normalized:
            raise NgramError(
                "prune_entropy needs a normalised backoff model; "
                f"smoothing={self.smoothing} is not one"
            )
        B = self.base
        protected = [np.zeros(len(t), bool) for t in self.keys]
        for k in range(self.order, 1, -1):
            keys = self.keys[k - 1]
            delta = self.entropy_deltas(k)
            gone = (np.expm1(delta) < threshold) & ~protected[k - 1]
            kept = ~gone
            ctx, suffix = keys // B, self._suffixes(k)
            protected[k - 2][ctx[kept]] = True
            protected[k - 2][suffix[kept]] = True
            changed = np.bincount(ctx[gone], minlength=len(self.keys[k - 2])) > 0
            if changed.any():
                p, q = np.exp(self.logp[k - 1][kept]), np.exp(self.logp[k - 2][suffix[kept]])
                n_ctx = len(self.keys[k - 2])
                num = 1 - np.bincount(ctx[kept], p, n_ctx)
                den = 1 - np.bincount(ctx[kept], q, n_ctx)
                with np.errstate(divide="ignore", invalid="ignore"):
                    bow = np.log(np.maximum(num, 0)) - np.log(np.maximum(den, 0))
                self.logbow[k - 2][changed] = bow[changed]
            # the order below is judged with this order's n-grams gone
            self._drop([None] * (k - 1) + [kept] + [None] * (self.order - k))
        self.info["prune_entropy"] = float(threshold)

    # -- scoring -----------------------------------------------------------------------------
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

    @property
    def stoi(self) -> dict[str, int]:
        if self._stoi is None:
            self._stoi = {w: i for i, w in enumerate(self.itos)}
        return self._stoi

    def words_of(self, k: int) -> np.ndarray:
        """The (n, k) word ids of every stored k-gram, in table order (``<s>`` is id V)."""
        return trie.words_of(self.keys, k, self.base)

    @property
    def has_arpa_form(self) -> bool:
        """Whether ``write_arpa`` can write it: a normalised model that backs off (not
        additive, MLE or stupid backoff)."""
        return self._uniform is None and self.normalized

    def save(self, path) -> None:
        """Every table, exactly (``.npz``, no pickle); ARPA holds only backoff-form models."""
        arrays = {
            "itos": np.asarray(self.itos),
            "meta": np.asarray(
                [self.order, self.unk_id, self.eos_id, int(self.normalized), FORMAT]
            ),
            "missing_bow": np.asarray(self.missing_bow),
        }
        arrays["smoothing"] = np.asarray(self.smoothing)
        for k in range(self.order):
            arrays[f"keys{k}"], arrays[f"logp{k}"] = self.keys[k], self.logp[k]
            arrays[f"logbow{k}"] = self.logbow[k]
            if self._uniform is not None:
                arrays[f"uctx{k}"], arrays[f"ugamma{k}"] = self._uniform[k]
        with written(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path, mmap: bool = True) -> NgramLM:
        """A model saved by ``save``. ``mmap``: the tables are mapped from the file rather than
        read, so a model larger than the memory budget can still score (pages are read as
        lookups touch them). Files of the first format (packed keys) are converted."""
        try:
            z = _npz_arrays(path, mmap)
            meta = [int(x) for x in z["meta"]]
            order, unk_id, eos_id, normalized = meta[:4]
            itos = z["itos"]
            if not 1 <= order <= len(z) or not (
                0 <= unk_id < len(itos) and 0 <= eos_id < len(itos)
            ):
                raise ValueError(f"order {order}, <unk> {unk_id}, <eos> {eos_id}: out of range")
            m = cls(
                [str(w) for w in itos],
                order,
                str(z["smoothing"]),
                unk_id,
                eos_id,
                bool(normalized),
            )
            m.keys = [z[f"keys{k}"] for k in range(order)]
            m.logp = [z[f"logp{k}"] for k in range(order)]
            m.logbow = [z[f"logbow{k}"] for k in range(order)]
            if "uctx0" in z:
                m._uniform = [(z[f"uctx{k}"], z[f"ugamma{k}"]) for k in range(order)]
            if "missing_bow" in z:
                m.missing_bow = float(z["missing_bow"])
            elif m.smoothing == "stupid_backoff":
                m.missing_bow = float(np.log(0.4))  # the first format saved only the default
            if len(meta) < 5:
                m._from_packed_keys()
            m._check_tables(path)
        except NgramError:
            raise
        except Exception as e:  # noqa: BLE001 - any way a damaged file fails: one line
            why = " ".join(f"{type(e).__name__}: {e}".split())
            raise NgramError(f"{path}: not an ngram model file ({why})") from None
        return m

    def _from_packed_keys(self) -> None:
        """Tables of the first ``.npz`` format, whose keys packed the words as ``sum w_i
        B^(k-i)``: the same n-grams in the same (word-by-word) order, keyed as ``ngram.keys``.
        Its additive and MLE models had no ``<s>`` unigram; it gets its row (log p 0)."""
        B, V = self.base, self.vocab_size
        keys = [np.asarray(t, dtype=np.int64) for t in self.keys]
        self.logp = [np.asarray(t) for t in self.logp]
        self.logbow = [np.asarray(t) for t in self.logbow]
        if len(keys[0]) == V:  # no <s> row
            keys[0] = np.arange(V + 1, dtype=np.int64)
            self.logp[0] = np.append(self.logp[0], 0.0)
            self.logbow[0] = np.append(self.logbow[0], 0.0)

        def digits(packed, k):
            return np.stack([(packed // B ** (k - 1 - j)) % B for j in range(k)], 1)

        new = [keys[0]]
        for k in range(2, self.order + 1):
            new.append(trie.from_words(digits(keys[k - 1], k), new, B)[0])
        self.keys = new
        if self._uniform is not None:
            uniform = [self._uniform[0]]
            for k in range(2, self.order + 1):
                ctx_keys, gamma = self._uniform[k - 1]
                cols = digits(np.asarray(ctx_keys, dtype=np.int64), k - 1)
                key = trie.from_words(cols, new, B)[0]
                uniform.append((np.searchsorted(new[k - 2], key), np.asarray(gamma)))
            self._uniform = uniform

    def _check_tables(self, path) -> None:
        """Values, not only the format: keys strictly increasing (lookups bisect them), every
        id a unigram, every context an index of the order below, and no NaN or +inf among the
        log-probabilities and weights (-inf is log 0). Read in blocks (from the file, for a
        memory map), so the check holds no copy of a large model."""
        for k in range(self.order):
            keys = self.keys[k]
            bad = keys.dtype != np.int64 or not _increasing(keys)
            bad = bad or not len(keys) == len(self.logp[k]) == len(self.logbow[k])
            if k == 0:
                bad = bad or len(keys) != self.base or keys[0] != 0 or keys[-1] != self.base - 1
            elif len(keys):
                bad = bad or keys[0] < 0 or keys[-1] // self.base >= len(self.keys[k - 1])
            if bad:
                raise NgramError(f"{path}: the {k + 1}-gram keys are not a sorted n-gram table")
            tables = [self.logp[k], self.logbow[k]]
            if self._uniform is not None:
                tables.append(self._uniform[k][1])
            for table in tables:
                if any(np.isnan(b).any() or np.isposinf(b).any() for b in _blocks(table)):
                    raise NgramError(
                        f"{path}: a {k + 1}-gram log-probability or weight is NaN or +inf"
                    )

    def perplexity(self, ids: np.ndarray) -> float:
        if not self.normalized:
            raise NgramError(
                "stupid backoff gives unnormalised scores, not probabilities: it has no perplexity"
            )
        lp = self.score_ids(ids)
        return math.exp(-lp.mean())


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


def _suffix_tables(keys_of: list[np.ndarray], base: int, block: int) -> list:
    """[None, suffix of each 2-gram in order 1, suffix of each 3-gram in order 2, ...], in
    blocks of ``block`` keys, narrow integers."""
    out = [None]
    for k in range(2, len(keys_of) + 1):
        keys, lower = keys_of[k - 1], keys_of[k - 2]
        suffix = np.empty(len(keys), dtype=trie.index_dtype(len(lower)))
        for a in range(0, len(keys), block):
            suffix[a : a + block] = trie.suffixes(keys[a : a + block], out[-1], lower, base)
        out.append(suffix)
    return out


def _blocks(a: np.ndarray, size: int = 1 << 22):
    """An array's values in blocks. A memory map is read from its file instead, so that a
    pass over a large model maps none of its pages into the process (they would count as
    resident memory until unmapped)."""
    if not isinstance(a, np.memmap):
        yield from (a[i : i + size] for i in range(0, len(a), size))
        return
    with open(a.filename, "rb") as f:
        for i in range(0, len(a), size):
            f.seek(a.offset + i * a.itemsize)
            yield np.fromfile(f, dtype=a.dtype, count=min(size, len(a) - i))


def _increasing(keys: np.ndarray) -> bool:
    last = None
    for b in _blocks(keys):
        if np.any(b[1:] <= b[:-1]) or (last is not None and len(b) and b[0] <= last):
            return False
        last = b[-1] if len(b) else last
    return True


def _narrow(counts: np.ndarray) -> np.ndarray:
    """Counts as int32 where they fit (they do below 2^31 tokens): a third less memory while
    smoothing; every use of them converts to float64 or compares, so no result changes."""
    return counts.astype(np.int32) if len(counts) and counts.max() < 2**31 else counts


def _npz_arrays(path, mmap: bool) -> dict:
    """name -> array of an ``.npz`` file; with ``mmap``, every uncompressed numeric member is a
    read-only memory map into the zip file (``np.savez`` stores members uncompressed)."""
    z = np.load(path, allow_pickle=False)
    if not mmap:
        return z
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            f.seek(info.header_offset)
            local = f.read(30)  # the zip local file header: name and extra field lengths
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            if (
                info.compress_type != zipfile.ZIP_STORED
                or dtype.kind not in "iuf"
                or not all(shape)
            ):
                out[name] = z[name]  # strings (the vocabulary), scalars, empty tables
                continue
            out[name] = np.memmap(
                path,
                dtype=dtype,
                mode="r",
                offset=f.tell(),
                shape=shape,
                order="F" if fortran else "C",
            )
    return out


def check_prune(prune, order: int, method: str) -> tuple[int, ...] | None:
    """lmplz's ``--prune`` thresholds, one per order: integers >= 0, none on unigrams, not
    decreasing (else a kept n-gram could lose its context or suffix)."""
    if prune is None:
        return None
    try:
        values = [int(t) for t in prune]
        ok = all(int(t) == float(t) for t in prune) and not isinstance(prune, str)
    except (TypeError, ValueError):
        values, ok = [], False
    if not ok or len(values) != order:
        raise NgramError(
            f"prune={list(prune) if not isinstance(prune, str) else prune!r} needs one integer "
            f"count threshold per order ({order} for order={order}), e.g. "
            f"{[0] + [1] * (order - 1)}"
        )
    if values[0] != 0:
        raise NgramError(
            f"prune={values}: unigrams are never pruned; the first threshold must be 0"
        )
    if any(t < 0 for t in values) or any(b < a for a, b in zip(values, values[1:])):
        raise NgramError(
            f"prune={values}: thresholds must be >= 0 and not decreasing (lmplz's rule: a kept "
            "n-gram keeps its context and suffix)"
        )
    if method in sm.UNIFORM and any(values):
        raise NgramError(f"prune needs a backoff model; smoothing={method} has none")
    return tuple(values) if any(values) else None


def check_params(method: str, params: dict) -> dict:
    allowed = {
        "lidstone": {"k"},
        "absolute": {"discount"},
        "kn": {"discount"},
        "modified_kn": {"discount_fallback"},
        "stupid_backoff": {"backoff"},
    }
    params = {k: v for k, v in params.items() if v is not None}  # unset options from config
    extra = set(params) - allowed.get(method, set())
    if extra:
        raise NgramError(f"smoothing={method} takes no option {', '.join(sorted(extra))}")
    out = dict(params)
    if method == "lidstone":
        k = out.get("k")
        if k is None or not k > 0:
            raise NgramError(f"lidstone needs k > 0 (add-k); got k={k!r}")
    if method in ("absolute", "kn") and out.get("discount") is not None:
        d = out["discount"]
        if not 0 < d <= 1:
            raise NgramError(f"discount={d!r} must be in (0, 1] for smoothing={method}")
    if method == "stupid_backoff":
        b = out.setdefault("backoff", 0.4)
        if not 0 < b < 1:
            raise NgramError(f"backoff={b!r} must be in (0, 1) for stupid backoff")
    if method == "modified_kn" and out.get("discount_fallback") is not None:
        fb = tuple(float(x) for x in out["discount_fallback"])
        if len(fb) != 3 or not all(0 < d < c for d, c in zip(fb, (1, 2, 3))):
            raise NgramError(
                f"discount_fallback={list(fb)} must be D1 in (0,1), D2 in (0,2), D3+ in (0,3)"
            )
        out["discount_fallback"] = fb
    return out
