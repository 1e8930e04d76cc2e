"""``DivergenceGuard``: stops training before a step that has blown up is applied."""

from __future__ import annotations

import math
from collections import deque

import torch

from seqlm.errors import Diverged

RECENT_NORMS = 10  # gradient norms a divergence report shows
# A training loss this many times the uniform guess (ln V nats) is a blown-up model, finite or
# not: every model starts near ln V, and pytorch/examples' tanh RNN at lr 20 without clipping
# sits at 80-170 nats on PTB (ln V = 9.2) instead of NaN.
DIVERGED_LOSS_FACTOR = 3


class DivergenceGuard:
    """Watches each step's loss and pre-clipping gradient norm. A norm or loss that is not
    finite, or a loss above ``DIVERGED_LOSS_FACTOR`` times the uniform guess, raises
    ``Diverged`` with the recent norms, so the step is never applied.

    Args:
        vocab_size: the model's vocabulary (the uniform guess is ``ln vocab_size``).
    """

    def __init__(self, vocab_size: int):
        self.ceiling = DIVERGED_LOSS_FACTOR * math.log(vocab_size)
        self.norms: deque[float] = deque(maxlen=RECENT_NORMS)
        self.loss: torch.Tensor | None = None  # the last training step's cross-entropy

    def check(self, norm: torch.Tensor, step: int, lr: float) -> None:
        """After the backward pass, before the optimizer step (host syncs on a GPU: two
        scalars a step)."""
        self.norms.append(float(norm))
        loss = float(self.loss) if self.loss is not None else 0.0
        if not math.isfinite(self.norms[-1]) or not math.isfinite(loss):
            raise self.diverged(step, lr)
        if loss > self.ceiling:
            why = f"over {DIVERGED_LOSS_FACTOR}x the uniform guess, {self.ceiling:.3g}"
            raise self.diverged(step, lr, why)

    def diverged(self, step: int, lr: float, why: str = "") -> Diverged:
        loss = float(self.loss) if self.loss is not None else float("nan")
        return Diverged(step, lr, loss, list(self.norms), why)
