"""``DivergenceGuard``: stops training before a step that has blown up is applied.

What counts as divergence depends on whether a loss scaler runs (``trainer.precision=16-mixed``):

- without one, a gradient norm or a loss that is not finite, or a loss above
  ``DIVERGED_LOSS_FACTOR`` times the uniform guess;
- with one, a non-finite gradient is the scaler's business: it skips that step and halves its
  scale (it *expects* overflows, and grows the scale again after 2,000 clean steps). Divergence
  is then a loss that is not finite or blown up, a scale that has collapsed (below
  ``MIN_SCALE``: the gradients overflow float16 even shrunk that far), or more than
  ``MAX_SKIPPED`` skipped steps in a row.

Under DDP every rank reaches the same verdict: each rank's findings are all-reduced (one small
collective), so the ranks stop together with the same message instead of one raising while the
others report a lost peer. The verdict costs one host sync a step, the one that deciding before
the optimizer applies the step needs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import torch

from seqlm.errors import Diverged

RECENT_NORMS = 10  # gradient norms a divergence report shows
# A training loss this many times the uniform guess (ln V nats) is a blown-up model, finite or
# not: every model starts near ln V, and pytorch/examples' tanh RNN at lr 20 without clipping
# sits at 80-170 nats on PTB (ln V = 9.2) instead of NaN.
DIVERGED_LOSS_FACTOR = 3
MAX_SKIPPED = 32  # overflowing steps in a row a loss scaler may skip (from 2^16 to 2^-16)
MIN_SCALE = 2.0**-16  # a loss scale below this has collapsed

# what a rank may find, in the order of the flags that are all-reduced
LOSS_NOT_FINITE, LOSS_BLOWN_UP, NORM_NOT_FINITE = range(3)


class DivergenceGuard:
    """Watches each step's loss and pre-clipping gradient norm, and raises ``Diverged`` with
    the recent norms, so that a step that diverged is never applied.

    Args:
        vocab_size: the model's vocabulary (the uniform guess is ``ln vocab_size``).
    """

    def __init__(self, vocab_size: int):
        self.ceiling = DIVERGED_LOSS_FACTOR * math.log(vocab_size)
        self.norms: deque[float] = deque(maxlen=RECENT_NORMS)
        self.loss: torch.Tensor | None = None  # the last training step's cross-entropy
        self.skipped = 0  # steps in a row a loss scaler skipped

    def check(
        self,
        norm: torch.Tensor,
        step: int,
        lr: float,
        scale: torch.Tensor | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> bool:
        """After the backward pass, before the optimizer step. ``scale``: the loss scaler's
        scale tensor when one runs (None: no scaler); ``reduce``: the all-reduce (max) of the ranks'
        findings under DDP. Returns whether the step is applied (False: the scaler skips it);
        raises ``Diverged`` when the run has diverged."""
        loss = self.loss if self.loss is not None else torch.zeros((), device=norm.device)
        loss = loss.detach().float().to(norm.device)
        norm = norm.detach().float()
        finite = torch.isfinite(loss)
        found = torch.stack([~finite, finite & (loss > self.ceiling), ~torch.isfinite(norm)])
        found = found.float()
        if reduce is not None:
            found = reduce(found)
        parts = [found, norm[None]] + ([] if scale is None else [scale.to(norm.device)[None]])
        values = torch.cat(parts).tolist()  # the one host sync
        flags = [bool(f) for f in values[:3]]
        self.norms.append(values[3])
        if flags[LOSS_NOT_FINITE]:
            raise self.diverged(step, lr, "the loss is not finite" + on_some_rank(reduce))
        if flags[LOSS_BLOWN_UP]:
            why = f"over {DIVERGED_LOSS_FACTOR}x the uniform guess, {self.ceiling:.3g}"
            raise self.diverged(step, lr, why + on_some_rank(reduce))
        if not flags[NORM_NOT_FINITE]:
            self.skipped = 0
            return True
        if scale is None:
            raise self.diverged(step, lr, "the gradient norm is not finite")
        self.skipped += 1  # the scaler skips this step and halves its scale
        scale = values[4]
        if scale < MIN_SCALE:
            raise self.diverged(
                step, lr, f"the loss scale collapsed to {scale:.3g} and gradients still overflow"
            )
        if self.skipped > MAX_SKIPPED:
            raise self.diverged(
                step, lr, f"{self.skipped} steps in a row overflowed float16 (scale {scale:.3g})"
            )
        return False

    def diverged(self, step: int, lr: float, why: str = "") -> Diverged:
        loss = float(self.loss) if self.loss is not None else float("nan")
        return Diverged(step, lr, loss, list(self.norms), why)


def on_some_rank(reduce) -> str:
    """Where a loss was found bad: under DDP the verdict is every rank's."""
    return " on one of the ranks" if reduce is not None else ""
