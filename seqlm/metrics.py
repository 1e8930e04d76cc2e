"""The one perplexity accumulator, and agreement accuracy by distance.

Both keep *sums* (NLL in nats and a token count; correct and total per distance) that
torchmetrics all-reduces across DDP ranks; ratios and ``exp`` are taken once, at the end.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


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


class Perplexity(Metric):
    """Sums of per-token NLL (nats, float64) and of the number of tokens scored."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("nll_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, nll: torch.Tensor) -> None:
        """nll: per-token NLL of the scored tokens only (padding already removed)."""
        self.nll_sum += nll.detach().to(torch.float64).sum()
        self.tokens += nll.numel()

    def compute(self) -> tuple[float, int]:
        """(sum of NLL, tokens), reduced over all ranks. torchmetrics syncs the states only
        inside compute() and restores the local ones after, so callers must use this value."""
        return float(self.nll_sum), int(self.tokens)


class AgreementAccuracy(Metric):
    """Does the model give the right verb form more probability than the wrong one?
    Counts per subject-verb distance (0..max_distance; longer ones fall into the last)."""

    full_state_update = False

    def __init__(self, max_distance: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.max_distance = max_distance
        zeros = torch.zeros(max_distance + 1, dtype=torch.int64)
        self.add_state("correct", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("total", zeros.clone(), dist_reduce_fx="sum")

    def update(self, right: torch.Tensor, distance: torch.Tensor) -> None:
        """right: bool per event; distance: its subject-verb distance."""
        d = distance.clamp(max=self.max_distance)
        self.correct += torch.bincount(d[right], minlength=self.max_distance + 1)
        self.total += torch.bincount(d, minlength=self.max_distance + 1)

    def compute(self) -> dict[int, tuple[int, int]]:
        """distance -> (correct, total) for the distances that occurred, over all ranks."""
        c, t = self.correct.tolist(), self.total.tolist()
        return {d: (c[d], t[d]) for d in range(len(t)) if t[d]}


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
