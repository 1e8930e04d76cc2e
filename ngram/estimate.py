"""Estimation, KenLM's ``lm/builder`` stages after counting: the adjusted (continuation)
counts, the discounts, and each order's interpolated log-probabilities and backoff weights,
written in backoff form (``NgramLM.keys``, ``.logp``, ``.logbow``). Additive and MLE models,
which spread their left-over mass uniformly rather than over lower orders, are estimated by
their own rule. Count pruning (lmplz's ``--prune``) is applied here, as the tables are made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

import numpy as np

from ngram import counting
from ngram import keys as trie
from ngram import smoothing as sm
from ngram.errors import NgramError
from ngram.keys import BOS, EOS, UNK
from ngram.prune import check_prune

M = TypeVar("M", bound="Estimation")  # the model class (NgramLM) fit_ids makes

ESTIMATE_BYTES_PER_NGRAM = 2048  # ~120 bytes of temporaries per n-gram of a smoothing block
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


class Estimation:
    """``NgramLM``'s fitting: ``fit`` (sentences) and ``fit_ids`` (seqlm's id streams)."""

    @classmethod
    def fit_ids(
        cls: type[M],
        ids: np.ndarray,
        itos: list[str],
        order: int = 3,
        smoothing: str = "modified_kn",
        unk_id: int = 0,
        eos_id: int = 1,
        max_memory: int | str | None = None,
        prune: list[int] | None = None,
        prune_entropy: float | None = None,
        dask: str | None = None,
        **params,
    ) -> M:
        """Fit on an id stream whose lines end with ``eos_id`` (seqlm's layout).

        ``dask``: count on a Dask cluster (``local:N`` or a scheduler address; see
        ``ngram.distributed``); the model is the same, bit for bit.

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
        model = cls(itos, order, smoothing, unk_id, eos_id, smoothing != "stupid_backoff")
        budget = counting.default_budget()
        if max_memory is not None:
            budget = counting.parse_size(max_memory, "max_memory")
        ids = np.asarray(ids)
        if len(ids) == 0:
            raise NgramError("no tokens to count")
        if ids[-1] != eos_id:
            ids = np.append(ids, eos_id)  # a last line without its end marker

        def bar(chunks: int):
            return progress_bar(f"counting {order}-grams", chunks, "chunk", len(ids))

        if dask is not None:
            from ngram.distributed import count_on_dask

            report = model.info["dask"] = {}
            raw = count_on_dask(ids, order, model.base, eos_id, model.bos_id, dask, report=report)
        else:
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
        cls: type[M],
        sentences: Iterable[list[str]],
        order: int = 3,
        smoothing: str = "modified_kn",
        **params,
    ) -> M:
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


def _narrow(counts: np.ndarray) -> np.ndarray:
    """Counts as int32 where they fit (they do below 2^31 tokens): a third less memory while
    smoothing; every use of them converts to float64 or compares, so no result changes."""
    return counts.astype(np.int32) if len(counts) and counts.max() < 2**31 else counts


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
