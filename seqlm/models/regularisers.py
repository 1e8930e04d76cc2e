"""The regularisers of AWD-LSTM (Merity, Keskar & Socher 2018, "Regularizing and Optimizing LSTM
Language Models"), on current PyTorch. Each is off at 0 and the identity in evaluation.

- ``embedding_dropout`` (``dropoute``): drops whole word types, i.e. rows of the embedding
  matrix, for one batch; the kept rows are scaled by ``1 / (1 - p)``.
- ``LockedDropout`` (``dropouti``, ``dropouth``, ``dropout``): variational dropout, one mask
  per sequence (row of the batch) shared by every time step.
- ``LayerStack`` (``seqlm.models.recurrent``) with ``wdrop``: DropConnect on each layer's
  hidden-to-hidden matrix ``W_hh``, a fresh mask per batch. The original ``WeightDrop`` deleted
  ``weight_hh_l0`` from the module and assigned plain tensors to it, which ``nn.LSTM`` refuses
  since PyTorch 1.4 (salesforce/awd-lstm-lm #86, #119). Here the parameter stays where it is,
  untouched, and the dropped matrix is passed for one call through
  ``torch.func.functional_call`` (the supported way to run a module with other tensors in place
  of its parameters): the ``state_dict`` keys never change, checkpoints load in training and
  evaluation alike, the gradient reaches the raw weight through the mask, and the call is still
  the module's own forward, so on a GPU the fused cuDNN kernel runs. Per-layer modules (rather
  than one multi-layer ``nn.LSTM``) because AWD-LSTM's layers differ in size (1150, 1150, 400)
  and locked dropout sits between them.
- ``activation_penalty``: AR, ``alpha * mean(dropped h_t^2)``, and TAR,
  ``beta * mean((h_t - h_{t-1})^2)``, on the last layer's outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout_mask(like: torch.Tensor, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Bernoulli(1 - p) entries scaled by ``1 / (1 - p)``, so that the expectation is 1."""
    return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


def embedding_dropout(
    embedding: nn.Embedding, tokens: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """``embedding(tokens)`` with each word type's vector dropped with probability ``p`` (the
    same word is dropped at every position of the batch, Gal & Ghahramani 2016)."""
    if not training or p == 0:
        return embedding(tokens)
    weight = embedding.weight
    mask = dropout_mask(weight, (weight.shape[0], 1), p)
    return F.embedding(tokens, weight * mask, embedding.padding_idx)


class LockedDropout(nn.Module):
    """Dropout with one mask per row of a batch-first ``(B, T, D)`` tensor, shared by its T
    time steps; a new mask at every call (every batch)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(x, (x.shape[0], 1, x.shape[2]), self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def activation_penalty(
    raw: torch.Tensor, dropped: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """AR + TAR of the last layer's outputs, batch-first ``(B, T, H)``: ``alpha`` times the mean
    square of the outputs after the output dropout, plus ``beta`` times the mean square of the
    step-to-step differences of the outputs before it (as AWD-LSTM's ``main.py``)."""
    penalty = raw.new_zeros(())
    if alpha:
        penalty = penalty + alpha * dropped.pow(2).mean()
    if beta and raw.shape[1] > 1:
        penalty = penalty + beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    return penalty


def contiguous_views(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors, copied into one buffer and returned as views of it, in order; the copy is
    differentiable. cuDNN runs a recurrent layer from one weight buffer; weights in separate
    tensors make it pack them again at every call, with the warning "RNN module weights are
    not part of single contiguous chunk of memory"."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    views, at = [], 0
    for t in tensors:
        views.append(flat[at : at + t.numel()].view_as(t))
        at += t.numel()
    return views
