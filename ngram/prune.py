"""Pruning, both kinds: count thresholds per order (lmplz's ``--prune``, checked here and
applied while estimating) and Stolcke's relative-entropy pruning (SRILM's ``-prune``), which
removes n-grams from a finished model and renormalises the backoff weights it changed.
"""

from __future__ import annotations

import numpy as np

from ngram import keys as trie
from ngram import smoothing as sm
from ngram.errors import NgramError


class Pruning:
    """``NgramLM``'s pruning: removing n-grams (``_drop``) and choosing them by entropy."""

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

    def _pruned_bows(self, k: int, ctx, suffix, kept) -> np.ndarray:
        """``backoff_weights`` of every context of order k-1 once the k-grams not ``kept`` are
        gone (meaningful where a context lost one)."""
        n_ctx = len(self.keys[k - 2])
        p, q = np.exp(self.logp[k - 1]), np.exp(self.logp[k - 2][suffix])
        gone = ~kept
        sums = [np.bincount(ctx[m], w[m], n_ctx) for w in (p, q) for m in (kept, gone)]
        p_kept, p_gone, q_kept, q_gone = sums
        with np.errstate(divide="ignore"):  # a context that lost nothing: unused
            return backoff_weights(p_kept, q_kept, p_gone, q_gone)

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
                self.logbow[k - 2][changed] = self._pruned_bows(k, ctx, suffix, kept)[changed]
            # the order below is judged with this order's n-grams gone
            self._drop([None] * (k - 1) + [kept] + [None] * (self.order - k))
        self.info["prune_entropy"] = float(threshold)


def backoff_weights(p_kept, q_kept, p_gone, q_gone) -> np.ndarray:
    """log backoff weights of contexts that lost n-grams, from per-context sums of the kept and
    the removed n-grams' probabilities (``p``: the n-gram's, ``q``: its suffix's): the mass
    left, ``1 - Σ_kept p``, over the lower order's, ``1 - Σ_kept q``. Each is at least what the
    removed n-grams had (their mass now backs off), so where ``1 - Σ`` cancels to 0 or below in
    floating point that lower bound stands in: the weight stays finite and positive, as SRILM
    keeps it, and no word of the vocabulary gets probability 0."""
    num = np.maximum(1 - p_kept, p_gone)
    den = np.maximum(1 - q_kept, q_gone)
    return np.log(num) - np.log(den)


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
