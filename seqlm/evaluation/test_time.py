"""Test-time methods for left-to-right networks: a neural cache (Grave et al. 2017) and dynamic
evaluation (Krause et al. 2018), alone or together.

Both keep evaluation's targets and layout (``docs/evaluation.md``): the split is read as
``rows`` contiguous rows from zero states, in windows. Within a window every target is scored
first; only then does the window enter the cache and, with dynamic evaluation, the weights.
So no token is ever predicted by a cache or by weights that have seen it.

Neural cache: with ``h_t`` the top layer's output at position t and ``y_i`` the target that
followed position i,

    p_cache(w | t) ∝ Σ_{i in the last `size` positions before t, y_i = w} exp(θ h_t · h_i)
    p(w | t) = (1 - λ) p_model(w | t) + λ p_cache(w | t)

Each row keeps its own cache (its own past). Dynamic evaluation: after scoring a window, one
step on that window's mean loss, ``sgd`` (``w -= lr g``) or ``rms`` (``w -= lr g / (sqrt(v) +
eps)`` with ``v`` a running mean of ``g²``), optionally pulled back toward the trained weights
(``decay``). The network is a copy: the checkpoint and the scorer's weights never change.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from seqlm.data.batching import IGNORE, EvalStream
from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError
from seqlm.models import RecurrentLM, detach_state

METHODS = ("sgd", "rms")


@dataclass(frozen=True)
class Cache:
    """Grave et al.'s continuous cache: ``size`` past positions, ``theta`` (flatness of the
    match), ``lam`` (its share of the mixture)."""

    size: int
    theta: float
    lam: float

    def __str__(self) -> str:  # in the config's names
        return f"cache.size={self.size} cache.theta={self.theta:g} cache.lambda={self.lam:g}"

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 1:
            raise SeqlmError(f"cache.size={self.size!r} must be a positive integer")
        if not self.theta >= 0:
            raise SeqlmError(f"cache.theta={self.theta!r} must be >= 0")
        if not 0 <= self.lam <= 1:
            raise SeqlmError(f"cache.lambda={self.lam!r} must be in [0, 1]")


@dataclass(frozen=True)
class Dynamic:
    """Krause et al.'s dynamic evaluation: a gradient step after every scored window."""

    lr: float
    method: str = "sgd"
    decay: float = 0.0  # pull toward the trained weights per step, in [0, 1)
    eps: float = 1e-8
    beta: float = 0.99  # rms: the running mean of g² forgets at this rate

    def __str__(self) -> str:  # in the config's names
        return f"dynamic.lr={self.lr:g} dynamic.method={self.method} dynamic.decay={self.decay:g}"

    def __post_init__(self):
        if not self.lr >= 0:
            raise SeqlmError(f"dynamic.lr={self.lr!r} must be >= 0")
        if self.method not in METHODS:
            raise SeqlmError(f"dynamic.method={self.method!r} is not one of {', '.join(METHODS)}")
        if not 0 <= self.decay < 1:
            raise SeqlmError(f"dynamic.decay={self.decay!r} must be in [0, 1)")


def cache_probability(
    h: torch.Tensor, past_h: torch.Tensor, past_y: torch.Tensor, theta: float, vocab_size: int
) -> torch.Tensor:
    """The whole cache distribution at one position: ``h`` (H,), ``past_h`` (N, H) and the
    targets that followed them ``past_y`` (N,) -> (V,), summing to one (zeros if N = 0)."""
    out = torch.zeros(vocab_size, dtype=torch.float64, device=h.device)
    if len(past_y) == 0:
        return out
    weights = torch.softmax(theta * (past_h.double() @ h.double()), 0)
    return out.index_add_(0, past_y, weights)


class _Walker:
    """One pass over a split's rows, window by window, scoring then adapting."""

    def __init__(self, net: RecurrentLM, cache: Cache | None, dynamic: Dynamic | None):
        self.net = copy.deepcopy(net) if dynamic is not None and dynamic.lr > 0 else net
        self.net.eval()  # dropout off; dynamic evaluation still takes gradients
        self.cache, self.dynamic = cache, dynamic
        adapting = self.net is not net  # a copy only when the weights will move
        self.trained = [p.detach().clone() for p in self.net.parameters()] if adapting else []
        self.square = [torch.zeros_like(p) for p in self.net.parameters()] if adapting else []

    def window(self, inp, target, state, past_h, past_y):
        """log p of the window's targets (B, T), the next state, and the updated cache. The
        cache reads the top layer's outputs ``h`` (``features``; in evaluation mode the
        network's dropouts are the identity)."""
        adapt = self.dynamic is not None and self.dynamic.lr > 0
        # cuDNN refuses backward through an RNN in eval mode: the adapting pass takes torch's
        # own kernels (the same figures), dropout staying off
        with (
            torch.set_grad_enabled(adapt),
            torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled and not adapt),
        ):
            h, new_state = self.net.features(inp, state)  # (B, T, H)
            lp = self.net.target_log_probs(h, target, torch.float64)  # (B, T), 0 at padding
            if adapt:
                self._step(-lp.sum() / (target != IGNORE).sum().clamp(min=1))
        scored = lp.detach()
        if self.cache is not None and self.cache.lam > 0:
            safe = target.clamp(min=0)
            scored, past_h, past_y = self._with_cache(scored, h.detach(), safe, past_h, past_y)
        return scored, detach_state(new_state), past_h, past_y

    def _with_cache(self, lp, h, y, past_h, past_y):
        """Mix each position's model probability of its target with the cache's; then push the
        window's positions into each row's cache (after they are scored)."""
        c = self.cache
        B, T, _ = h.shape
        hist_h = torch.cat([past_h, h], 1)  # (B, N0 + T, H): old entries, then this window
        hist_y = torch.cat([past_y, y], 1)
        n0 = past_h.shape[1]
        scores = c.theta * torch.einsum("bth,bjh->btj", h.double(), hist_h.double())
        j = torch.arange(n0 + T, device=h.device)[None, :]
        t = torch.arange(T, device=h.device)[:, None] + n0  # position t's index in the history
        allowed = (j < t) & (j >= t - c.size)  # the last `size` positions strictly before t
        scores = scores.masked_fill(~allowed[None], float("-inf"))
        attn = torch.softmax(scores, -1).nan_to_num(0.0)  # a row with no past: all zeros
        hit = (hist_y[:, None, :] == y[:, :, None]).double()  # (B, T, N0 + T)
        p_cache = (attn * hit).sum(-1)
        mixed = torch.log((1 - c.lam) * lp.exp() + c.lam * p_cache)
        has_past = allowed.any(-1)[None, :]  # an empty cache leaves the model's probability
        mixed = torch.where(has_past, mixed, lp)
        keep = min(c.size, n0 + T)
        return mixed, hist_h[:, -keep:], hist_y[:, -keep:]

    def _step(self, loss: torch.Tensor) -> None:
        d = self.dynamic
        params = list(self.net.parameters())
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g, p0, v in zip(params, grads, self.trained, self.square):
                if d.method == "rms":
                    v.mul_(d.beta).add_((1 - d.beta) * g * g)
                    g = g / (v.sqrt() + d.eps)
                p.sub_(d.lr * g)
                if d.decay:
                    p.add_(d.decay * (p0 - p))


def adapted_logprobs(
    net: RecurrentLM,
    ids: np.ndarray,
    rows: int,
    window: int,
    cache: Cache | None = None,
    dynamic: Dynamic | None = None,
) -> np.ndarray:
    """log p of every target of ``ids`` (in order) under the cache and/or dynamic evaluation;
    with neither (or ``lam = 0`` and ``lr = 0``) exactly the plain evaluation's."""
    walker = _Walker(net, cache, dynamic)
    stream = EvalStream(np.asarray(ids), Vocab.eos_id, rows, window)
    param = next(walker.net.parameters())  # tensors are made on its device, in its dtype
    H, device = walker.net.hidden_size, param.device
    B = stream.tensors["input"].shape[0]
    past_h = torch.zeros(B, 0, H, dtype=param.dtype, device=device)
    past_y = torch.zeros(B, 0, dtype=torch.long, device=device)
    state, columns = None, []
    for batch in stream:
        inp, target = batch["input"].to(device), batch["target"].to(device)
        lp, state, past_h, past_y = walker.window(inp, target, state, past_h, past_y)
        columns.append(lp)
    if not columns:
        return np.zeros(0)
    return torch.cat(columns, 1).flatten().cpu().numpy()[: len(ids)]  # leaves the device once


CACHE_GRID = {"theta": (0.1, 0.3, 1.0, 3.0), "lam": (0.05, 0.1, 0.2, 0.3)}
DYNAMIC_GRID = {"sgd": (0.03, 0.1, 0.3, 1.0, 3.0), "rms": (1e-4, 3e-4, 1e-3, 3e-3)}


def tune(
    net: RecurrentLM,
    ids: np.ndarray,
    rows: int,
    window: int,
    cache: Cache | None,
    dynamic: Dynamic | None,
    search_cache: bool,
    search_dynamic: bool,
) -> tuple[Cache | None, Dynamic | None, list[dict]]:
    """The settings with the lowest validation loss over a small grid (the cache's theta and
    lambda, dynamic evaluation's learning rate), searched one method after the other; the
    settings not searched stay as given. Each grid includes the method switched off (lr 0,
    lambda 0), so a search never ends worse on valid than the model without it. Returns the
    settings and every point tried, in order (the first: the base)."""
    tried: list[dict] = []

    def loss(c, d) -> float:
        value = -float(adapted_logprobs(net, ids, rows, window, c, d).mean())
        tried.append({"cache": c, "dynamic": d, "val/loss": value})
        return value

    if search_dynamic and dynamic is not None:
        rates = (0.0, *DYNAMIC_GRID[dynamic.method])  # lr 0: no dynamic evaluation
        dynamic = min(
            (Dynamic(lr, dynamic.method, dynamic.decay) for lr in rates),
            key=lambda d: loss(None, d),
        )
    if search_cache and cache is not None:
        thetas, lams = CACHE_GRID["theta"], CACHE_GRID["lam"]
        grid = [Cache(cache.size, thetas[0], 0.0)]  # lambda 0: no cache
        grid += [Cache(cache.size, th, lam) for th in thetas for lam in lams]
        cache = min(grid, key=lambda c: loss(c, dynamic))
    return cache, dynamic, tried
