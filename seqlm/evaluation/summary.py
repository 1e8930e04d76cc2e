"""Figures from sums, without torch: perplexity from an NLL sum, agreement accuracy from counts
per distance (``evaluation.metrics`` keeps the sums across DDP ranks; an n-gram's evaluation, which
needs no torch, makes them with numpy)."""

from __future__ import annotations

import math

import numpy as np

MAX_DISTANCE = 100  # longer subject-verb distances are counted with this one


def summarize(nll_sum: float, tokens: int, split: str, pseudo: bool = False) -> dict[str, float]:
    """``{split}/loss`` (nats/token), ``/ppl`` (``/pseudo_ppl`` for the cloze model), ``/bits``
    (bits/token), ``/tokens``, as ``docs/evaluation.md`` defines them; every family uses it."""
    loss = nll_sum / tokens if tokens else float("nan")
    ppl = math.exp(loss) if loss < 709 else float("inf")
    return {
        f"{split}/loss": loss,
        f"{split}/{'pseudo_ppl' if pseudo else 'ppl'}": ppl,
        f"{split}/bits": loss / math.log(2),
        f"{split}/tokens": int(tokens),
    }


def agreement_counts(right: np.ndarray, distance: np.ndarray) -> dict[int, tuple[int, int]]:
    """distance -> (correct, total) for the distances that occurred: ``AgreementAccuracy``'s
    counts, from numpy arrays."""
    d = np.minimum(np.asarray(distance, dtype=np.int64), MAX_DISTANCE)
    correct = np.bincount(d[np.asarray(right, bool)], minlength=MAX_DISTANCE + 1).tolist()
    total = np.bincount(d, minlength=MAX_DISTANCE + 1).tolist()
    return {k: (correct[k], total[k]) for k in range(len(total)) if total[k]}


BUCKETS = ((1, 1), (2, 5), (6, 10), (11, 15), (16, 20), (21, 30), (31, 40), (41, 50), (51, None))


def bucket_name(lo: int, hi: int | None) -> str:
    """``d1``, ``d2-5``, ..., ``d51+``: the key suffix of a distance bucket."""
    return f"d{lo}" if lo == hi else f"d{lo}+" if hi is None else f"d{lo}-{hi}"


def agreement_summary(
    by_distance: dict[int, tuple[int, int]], split: str, far: int = 5
) -> dict[str, float]:
    """Overall accuracy, accuracy at distance >= ``far``, and accuracy per distance bucket
    (``{split}/agreement_d2-5``, ...; buckets with no event are left out)."""

    def acc(items):
        items = list(items)
        total = sum(t for _, t in items)
        return sum(c for c, _ in items) / total if total else float("nan")

    out = {
        f"{split}/agreement": acc(by_distance.values()),
        f"{split}/agreement_far": acc(v for d, v in by_distance.items() if d >= far),
    }
    for lo, hi in BUCKETS:
        inside = [v for d, v in by_distance.items() if lo <= d and (hi is None or d <= hi)]
        if inside:
            out[f"{split}/agreement_{bucket_name(lo, hi)}"] = acc(inside)
    return out
