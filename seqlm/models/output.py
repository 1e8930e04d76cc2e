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
        ``IGNORE`` (padding). ``logit_t - m - log Σ_w exp(logit_w - m)``, ``m`` the largest
        logit: the V-wide sum of exponentials in float32 at least (its relative error ~1e-7),
        the few (...) results in ``dtype``, so that float64 costs no V-wide float64 pass."""
        logits = self.logits(hidden)
        work = torch.promote_types(logits.dtype, torch.float32)
        x = logits.to(work)
        picked = x.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
        top = x.amax(-1, keepdim=True).detach()  # lse is the same for any shift
        total = torch.exp(x - top).sum(-1)
        out = dtype or work
        lp = picked.to(out) - top.squeeze(-1).to(out) - torch.log(total.to(out))
        return torch.where(target != IGNORE, lp, torch.zeros((), dtype=out, device=lp.device))
