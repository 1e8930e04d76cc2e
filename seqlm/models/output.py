"""The output layer every path reads a network through.

A network gives ``features``: the top layer's outputs ``h`` (the RNN's ``s_t``), and on them
the output layer ``o_t = softmax(V s_t)``. Training, evaluation, scoring, the neural cache,
dynamic evaluation, gradients through time and decoders all take probabilities from
``log_probs`` and ``target_log_probs`` here: a full softmax over ``logits``, or an
``AdaptiveSoftmax`` (``model.softmax=adaptive``), the one place that tells them apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqlm.data.batching import IGNORE
from seqlm.errors import SeqlmError


class LanguageModel(nn.Module):
    """A network's output layer over the whole vocabulary. Subclasses give ``features`` and
    either ``logits(hidden)`` (the layer before a full softmax) or an ``adaptive`` softmax."""

    layout: str  # how its data is batched: ``stream`` or ``sentences``
    adaptive: AdaptiveSoftmax | None  # set by every subclass (a Module: no class default)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) -> scores before the softmax (..., V)."""
        raise NotImplementedError

    def log_probs(self, hidden: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """hidden (..., D) -> normalised natural-log probabilities of every word (..., V),
        computed in ``dtype`` (default: the logits' own, float32 at least, whatever the
        autocast precision)."""
        if self.adaptive is not None:
            return self.adaptive.log_probs(hidden, dtype)
        logits = self.logits(hidden)
        dtype = dtype or torch.promote_types(logits.dtype, torch.float32)
        return torch.log_softmax(logits.to(dtype), -1)

    def target_log_probs(
        self, hidden: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """log p of each ``target`` (...) given ``hidden`` (..., D); 0 where the target is
        ``IGNORE`` (padding). In float32 (the training loss): ``F.cross_entropy``, one fused
        log-softmax and gather that keeps one V-wide tensor for backward (under autocast it
        reads half-precision logits and works in float32). In float64 (``dtype``: evaluation and
        the scorers): ``logit_t - m - log Σ_w exp(logit_w - m)``, ``m`` the largest logit,
        the V-wide sum of exponentials in float32 at least (its relative error ~1e-7), the few
        (...) results in float64, so that float64 costs no V-wide float64 pass."""
        if self.adaptive is not None:
            return self.adaptive.target_log_probs(hidden, target, dtype)
        logits = self.logits(hidden)
        work = torch.promote_types(logits.dtype, torch.float32)
        if (dtype or work) == torch.float32:
            flat = logits.reshape(-1, logits.shape[-1])
            nll = F.cross_entropy(flat, target.reshape(-1), ignore_index=IGNORE, reduction="none")
            return -nll.reshape(target.shape)
        x = logits.to(work)
        picked = x.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
        top = x.amax(-1, keepdim=True).detach()  # lse is the same for any shift
        total = torch.exp(x - top).sum(-1)
        out = dtype or work
        lp = picked.to(out) - top.squeeze(-1).to(out) - torch.log(total.to(out))
        return torch.where(target != IGNORE, lp, torch.zeros((), dtype=out, device=lp.device))


class AdaptiveSoftmax(nn.Module):
    """The adaptive softmax of Grave et al. (2017), exact over the whole vocabulary.

    Ids are frequency ranks (``Vocab``: ``<unk>``, ``<eos>``, then words by falling training
    count), so ``cutoffs`` ``c_1 < ... < c_K`` split them into a head ``[0, c_1)`` and tail
    clusters ``[c_i, c_{i+1})``. The head scores its words and one entry per cluster; cluster
    ``i`` scores its words through a projection to ``D / div_value**(i+1)`` (rare words get
    small vectors):

        log p(w) = log softmax(head(h))[w]                               w in the head
        log p(w) = log softmax(head(h))[c_1 + i] + log softmax(tail_i(h))[w - c_i]   else

    The same factorisation as ``torch.nn.AdaptiveLogSoftmaxWithLoss`` (tests compare the two
    with copied weights), plus a head bias and tying of the head's word vectors with the
    embedding. A target's log-probability needs the head and its own cluster only: training
    runs each cluster on its targets alone, which is where the speed comes from.

    Args:
        in_features: D, the size of the features read.
        vocab_size: V.
        cutoffs: the head's size and each cluster's start (checked by ``CellOptions``).
        div_value: the shrink factor of the clusters' projections.
        tied: an embedding (V, D) whose first ``c_1`` rows are the head's word vectors.
    """

    def __init__(
        self,
        in_features: int,
        vocab_size: int,
        cutoffs: list[int],
        div_value: float,
        tied: nn.Embedding | None = None,
    ):
        super().__init__()
        self.bounds = [*cutoffs, vocab_size] if cutoffs else [vocab_size]
        self.in_features, self.vocab_size = in_features, vocab_size
        short = self.bounds[0]
        self._tied = [tied] if tied is not None else []  # a list: not a second registration
        if tied is not None:
            if tied.embedding_dim != in_features:
                raise SeqlmError(
                    f"model.tie_weights=true needs the embedding size ({tied.embedding_dim}) "
                    f"== the features read by the softmax ({in_features})"
                )
            self.head_bias = nn.Parameter(torch.zeros(short))
        else:
            self.head = nn.Linear(in_features, short)  # the shortlist's words
            nn.init.uniform_(self.head.weight, -0.1, 0.1)
            nn.init.zeros_(self.head.bias)
        n_clusters = len(self.bounds) - 1
        self.clusters = nn.Linear(in_features, n_clusters) if n_clusters else None
        self.tails = nn.ModuleList()
        for i, (lo, hi) in enumerate(zip(self.bounds, self.bounds[1:])):
            dim = max(1, int(in_features // div_value ** (i + 1)))
            self.tails.append(
                nn.Sequential(
                    nn.Linear(in_features, dim, bias=False), nn.Linear(dim, hi - lo, bias=False)
                )
            )

    def head_log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """h (N, D) -> log-probabilities (N, c_1 + K) of the head's words and its clusters, in
        float32 at least."""
        if self._tied:
            words = F.linear(h, self._tied[0].weight[: self.bounds[0]], self.head_bias)
        else:
            words = self.head(h)
        x = words if self.clusters is None else torch.cat([words, self.clusters(h)], -1)
        return torch.log_softmax(x.to(torch.promote_types(x.dtype, torch.float32)), -1)

    def tail_log_probs(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """h (N, D) -> log p(w | cluster i) (N, size of cluster i), in float32 at least."""
        x = self.tails[i](h)
        return torch.log_softmax(x.to(torch.promote_types(x.dtype, torch.float32)), -1)

    def log_probs(self, hidden: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """hidden (..., D) -> log p of every word (..., V)."""
        h = hidden.reshape(-1, self.in_features)
        head = self.head_log_probs(h)  # (N, c_1 + K)
        short = self.bounds[0]
        parts = [head[:, :short]]
        for i in range(len(self.tails)):
            parts.append(self.tail_log_probs(i, h) + head[:, short + i, None])
        out = torch.cat(parts, -1)
        return out.to(dtype or out.dtype).reshape(*hidden.shape[:-1], self.vocab_size)

    def target_log_probs(
        self, hidden: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """log p of each ``target`` (...) given ``hidden`` (..., D), 0 where it is ``IGNORE``:
        the head for every position, each cluster for its own targets only."""
        h = hidden.reshape(-1, self.in_features)
        t = target.reshape(-1).clamp(min=0)
        head = self.head_log_probs(h)
        short = self.bounds[0]
        lp = head.gather(1, t.clamp(max=short - 1)[:, None]).squeeze(1)
        lp = torch.where(t < short, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))
        # the rows of each cluster's targets, from one host sync for all of them (the sizes)
        bounds = torch.tensor(self.bounds, device=t.device)
        cluster = torch.bucketize(t, bounds, right=True)  # 0: the head, i + 1: tail i
        order = torch.argsort(cluster, stable=True)
        sizes = torch.bincount(cluster, minlength=len(self.bounds)).tolist()
        groups = torch.split(order, sizes)
        for i, lo in enumerate(self.bounds[:-1]):
            # every cluster runs, on no rows if none of its words is a target, so that each
            # parameter is in the graph on every step (DDP expects that)
            rows = groups[i + 1]
            inside = self.tail_log_probs(i, h[rows]).gather(1, (t[rows] - lo)[:, None])
            lp = lp.index_add(0, rows, inside.squeeze(1) + head[rows, short + i])
        out = dtype or lp.dtype
        lp = lp.to(out).reshape(target.shape)
        return torch.where(target != IGNORE, lp, torch.zeros((), dtype=out, device=lp.device))

    def extra_repr(self) -> str:
        return f"bounds={self.bounds}"
