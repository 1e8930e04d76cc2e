"""The one perplexity accumulator, and agreement accuracy by distance.

Both keep *sums* (NLL in nats and a token count; correct and total per distance) that
torchmetrics all-reduces across DDP ranks; ratios and ``exp`` are taken once, at the end.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from seqlm.evaluation.summary import MAX_DISTANCE


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

    def __init__(self, max_distance: int = MAX_DISTANCE, **kwargs):
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
