"""The output layer every path reads a network through.

A network gives ``features``: the top layer's outputs ``h`` (the RNN's ``s_t``), and on them
the output layer ``o_t = softmax(V s_t)``. Training, evaluation, scoring, the neural cache,
dynamic evaluation, gradients through time and decoders all take probabilities from
``log_probs`` and ``target_log_probs`` here, so that a different output layer (an adaptive
softmax) is a change to this class alone.
"""

from __future__ import annotations

import torch
from torch import nn

from seqlm.data.batching import IGNORE


def gather_targets(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log_probs`` (..., V) at each ``target`` (...), 0 where the target is ``IGNORE``."""
    keep = target != IGNORE
    picked = log_probs.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
    return torch.where(keep, picked, torch.zeros((), dtype=picked.dtype, device=picked.device))


class LanguageModel(nn.Module):
    """A network's output layer over the whole vocabulary. Subclasses give ``logits(hidden)``
    (the layer before the softmax) and ``features``."""

    layout: str  # how its data is batched: ``stream`` or ``sentences``

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) -> scores before the softmax (..., V)."""
        raise NotImplementedError

    def log_probs(self, hidden: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """hidden (..., D) -> normalised natural-log probabilities of every word (..., V),
        computed in ``dtype`` (default: the logits' own, float32 at least, whatever the
        autocast precision)."""
        logits = self.logits(hidden)
        dtype = dtype or torch.promote_types(logits.dtype, torch.float32)
        return torch.log_softmax(logits.to(dtype), -1)

    def target_log_probs(
        self, hidden: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """log p of each ``target`` (...) given ``hidden`` (..., D); 0 where the target is
        ``IGNORE`` (padding)."""
        return gather_targets(self.log_probs(hidden, dtype), target)
