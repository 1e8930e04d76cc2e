"""Smoothing methods. Each turns the counts of one order into, for every seen n-gram ``hw``,
the discounted part ``alpha(w|h)``, and for every seen context ``h`` the mass ``gamma(h)``
left for the lower order, so that (interpolated form)

    p(w | h) = alpha(w | h) + gamma(h) * p(w | h')        h' = h without its first word

with ``p`` of the empty context interpolated with the uniform distribution. Additive and MLE
instead spread ``gamma`` uniformly (they ignore lower orders, as nltk.lm does).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ngram.errors import NgramError

RECURSIVE = ("witten_bell", "absolute", "kn", "modified_kn", "stupid_backoff")
UNIFORM = ("mle", "laplace", "lidstone")
METHODS = UNIFORM + RECURSIVE
CONTINUATION = ("kn", "modified_kn")  # methods that count lower orders by left extensions


@dataclass
class OrderStats:
    """One order's n-grams: sorted keys, the counts the method uses, and context groups."""

    keys: np.ndarray
    counts: np.ndarray
    ctx_keys: np.ndarray
    ctx_index: np.ndarray  # n-gram -> its context among ctx_keys


def count_of_counts(counts: np.ndarray, upto: int = 4) -> list[int]:
    return [int((counts == c).sum()) for c in range(1, upto + 1)]


def kn_discount(counts: np.ndarray, order: int) -> float:
    """D = n1 / (n1 + 2 n2) (Ney, Essen & Kneser 1994; Chen & Goodman 1998 eq. 13)."""
    n1, n2 = count_of_counts(counts, 2)
    if n1 == 0 or n2 == 0:
        raise NgramError(
            f"order {order}: count-of-counts n1={n1}, n2={n2}; the corpus is too "
            "small to estimate a Kneser-Ney discount (give discount=D)"
        )
    return n1 / (n1 + 2 * n2)


def modified_kn_discounts(
    counts: np.ndarray, order: int, fallback: tuple[float, float, float] | None
) -> tuple[float, ...]:
    """D1, D2, D3+ from count-of-counts n1..n4 (Chen & Goodman 1998 eq. 26), as KenLM's lmplz
    estimates them from the adjusted counts of each order."""
    n = count_of_counts(counts, 4)
    ok = all(n)
    if ok:
        y = n[0] / (n[0] + 2 * n[1])
        d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
        ok = all(0 < di < c for di, c in zip(d, (1, 2, 3)))
    if ok:
        return d
    msg = (
        f"order {order}: count-of-counts n1..n4={n} cannot give modified Kneser-Ney "
        "discounts (the corpus is too small)"
    )
    if fallback is None:
        raise NgramError(
            msg + "; give discount_fallback=[D1,D2,D3] to use fixed ones (`ngram fit "
            "--discount_fallback` as lmplz's: 0.5 1 1.5)"
        )
    warnings.warn(f"{msg}; using discount_fallback={list(fallback)}", stacklevel=3)
    return tuple(fallback)


def discounts(method: str, counts: np.ndarray, order: int, params: dict) -> dict:
    """The discounts of one whole order (from its count-of-counts, or as given), computed once
    before the order is estimated block by block: ``{"discount": D}`` for absolute and KN,
    ``{"discounts": [D1, D2, D3+]}`` for modified KN, ``{}`` for the rest."""
    if method in ("absolute", "kn"):
        d = params.get("discount")
        return {"discount": kn_discount(counts, order) if d is None else float(d)}
    if method == "modified_kn":
        return {
            "discounts": list(modified_kn_discounts(counts, order, params.get("discount_fallback")))
        }
    return {}


def estimate(
    method: str, st: OrderStats, order: int, vocab_size: int, params: dict, disc: dict | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(alpha per n-gram, gamma per context, facts such as the discounts used). The contexts
    of ``st`` are whole; ``disc`` are the order's discounts (``discounts``), computed here from
    ``st`` when not given."""
    if disc is None:
        disc = discounts(method, st.counts, order, params)
    c = st.counts.astype(np.float64)
    n_ctx = len(st.ctx_keys)
    total = np.bincount(st.ctx_index, weights=c, minlength=n_ctx)  # c(h) = sum_x c(hx)
    seen = np.bincount(st.ctx_index, minlength=n_ctx).astype(np.float64)  # N1+(h .)
    info: dict = {}
    if method == "mle":
        return c / total[st.ctx_index], np.zeros(n_ctx), info
    if method in ("laplace", "lidstone"):
        # Lidstone: p = (c(hw) + k) / (c(h) + kV); Laplace is k = 1 (Chen & Goodman eq. 4)
        k = 1.0 if method == "laplace" else float(params["k"])
        denom = total + k * vocab_size
        return c / denom[st.ctx_index], k * vocab_size / denom, info
    if method == "witten_bell":
        # p = (c(hw) + N1+(h.) p(w|h')) / (c(h) + N1+(h.))   (Chen & Goodman eq. 16)
        denom = total + seen
        return c / denom[st.ctx_index], seen / denom, info
    if method == "stupid_backoff":
        # S(w|h) = c(hw)/c(h) if seen, else 0.4 S(w|h')   (Brants et al. 2007): not normalised
        return c / total[st.ctx_index], np.full(n_ctx, float(params["backoff"])), info
    if method in ("absolute", "kn"):
        # p = max(c - D, 0)/c(h) + D N1+(h.)/c(h) p(w|h')   (Chen & Goodman eqs. 12-13)
        d = disc["discount"]
        info["discount"] = d
        return (c - d) / total[st.ctx_index], d * seen / total, info
    if method == "modified_kn":
        # p = (c - D(c))/c(h) + (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.))/c(h) p(w|h')  (eq. 26)
        d = disc["discounts"]
        info["discounts"] = list(d)
        dc = np.asarray(d)[np.minimum(st.counts, 3) - 1]
        mass = np.bincount(st.ctx_index, weights=dc, minlength=n_ctx)
        return (c - dc) / total[st.ctx_index], mass / total, info
    raise NgramError(f"smoothing={method!r} is not one of {', '.join(METHODS)}")
