"""The recurrent cells that came after the tutorial's LSTM and GRU, with ``nn.LSTM``'s call:
``module(x (B, T, I), state) -> (outputs of the last layer (B, T, H), state)``, the state
``(L, B, H)`` (a pair ``(h, c)`` for the Mogrifier LSTM) or ``None`` for zeros; ``num_layers``
stacked, ``dropout`` between them in training as ``nn.LSTM`` does it. Parameters are named as
torch's (``weight_ih_l0``, ``weight_hh_l0``, ...), so weight drop and the equation tests read
them the same way.

**Mogrifier LSTM** (Melis, Kocisky & Blunsom 2020). Before each step the input and the previous
state gate each other in ``rounds`` alternating rounds, ``x^{-1} = x``, ``h^0 = h_{t-1}``:

    x^i = 2 sigmoid(Q^i h^{i-1}) * x^{i-2}      (odd i <= rounds)
    h^i = 2 sigmoid(R^i x^{i-1}) * h^{i-2}      (even i <= rounds)

and an LSTM step reads the last ``x`` and ``h``. ``rank`` factorises each ``Q^i``, ``R^i`` into
two thin matrices (``Q = Q_a Q_b``); ``rounds=0`` is the LSTM itself.

**minGRU and minLSTM** (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We
Needed?"): gates that read only ``x_t``, never ``h_{t-1}``, so that ``h_t = a_t h_{t-1} + b_t``
is a linear recurrence with coefficients known in advance:

    minGRU:  z_t = sigmoid(W_z x_t),  h~_t = g(W_h x_t)
             h_t = (1 - z_t) h_{t-1} + z_t h~_t
    minLSTM: f_t = sigmoid(W_f x_t),  i_t = sigmoid(W_i x_t),  h~_t = g(W_h x_t)
             h_t = f_t / (f_t + i_t) h_{t-1} + i_t / (f_t + i_t) h~_t

with the paper's ``g(v) = v + 1/2`` for ``v >= 0``, ``sigmoid(v)`` below (its log-space form:
``h~`` stays positive, so the sums can be taken in log space). Two ways to compute the same
``h``: ``sequential`` (the recurrence, one step at a time: what evaluation with a carried state
runs, and the step API) and ``scan`` (all ``T`` steps at once, training):

    h_t = A_t h_0 + sum_{k<=t} (A_t / A_k) b_k,   A_t = a_1 ... a_t
        = A_t h_0 + exp(log A_t + logcumsumexp_k(log b_k - log A_k))

where ``log a`` and ``log b`` come straight from the pre-activations (``log(1 - sigmoid(v)) =
-softplus(v)``), so nothing is multiplied out step by step. ``h_0`` may have either sign (it
enters linearly). The log-space sums run in float64 (``scan`` says why), whatever autocast does
to the matrices.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def scripted(steps):
    """``steps`` compiled by TorchScript once (``_Layers.loop``)."""
    import warnings

    with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated; it is the
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy ONNX exporter's loops
        return torch.jit.script(steps)


def log_g(v: torch.Tensor) -> torch.Tensor:
    """``log g(v)``: ``log(v + 1/2)`` for ``v >= 0``, ``log sigmoid(v)`` below."""
    return torch.where(v >= 0, (F.relu(v) + 0.5).log(), -F.softplus(-v))


class _Layers(nn.Module):
    """What the three cells share: ``nn.LSTM``'s constructor (sizes, ``num_layers``,
    ``batch_first``, ``dropout``), torch-style parameter names, the loop over layers."""

    paired = False  # whether the state is an (h, c) pair
    scripted = False  # run the loops over the tokens as TorchScript (``loop``)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        batch_first: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not batch_first:
            raise ValueError(f"{type(self).__name__} takes batch-first input only")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.dropout, self.batch_first = num_layers, dropout, batch_first

    def layer_inputs(self):
        """(layer, its input size) for every layer."""
        sizes = [self.input_size] + [self.hidden_size] * (self.num_layers - 1)
        return enumerate(sizes)

    def loop(self, steps):
        """``steps`` (a loop over the tokens), or with ``scripted`` its TorchScript: what the
        ONNX export traces, so that the loop becomes an ONNX ``Loop`` over any length instead
        of the example's steps unrolled (``seqlm.export``)."""
        return scripted(steps) if self.scripted else steps

    def _param(self, name: str, *shape: int) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # torch's init of its recurrent layers
        self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)

    def forward(self, x: torch.Tensor, state=None):
        if state is None:
            state = (self._zeros(x), self._zeros(x)) if self.paired else self._zeros(x)
        states = []
        for layer in range(self.num_layers):
            if layer and self.training and self.dropout:
                x = F.dropout(x, self.dropout, True)
            s = tuple(p[layer] for p in state) if self.paired else state[layer]
            x, s = self.layer(layer, x, s)
            states.append(s)
        if self.paired:
            return x, tuple(torch.stack(p) for p in zip(*states))
        return x, torch.stack(states)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"


class MogrifierLSTM(_Layers):
    """The Mogrifier LSTM; ``rounds`` and ``rank`` (``None``: full matrices) as above. Gate
    order and parameter names are ``nn.LSTM``'s (``i, f, g, o``)."""

    paired = True

    def __init__(self, *sizes, rounds: int, rank: int | None, **options):
        super().__init__(*sizes, **options)
        self.rounds, self.rank = rounds, rank
        hidden_size = self.hidden_size
        for layer, size_in in self.layer_inputs():
            self._param(f"weight_ih_l{layer}", 4 * hidden_size, size_in)
            self._param(f"weight_hh_l{layer}", 4 * hidden_size, hidden_size)
            self._param(f"bias_ih_l{layer}", 4 * hidden_size)
            self._param(f"bias_hh_l{layer}", 4 * hidden_size)
            for i in range(1, rounds + 1):
                # odd rounds map h (H) to a gate on x; even rounds map x to a gate on h
                out, inp = (size_in, hidden_size) if i % 2 else (hidden_size, size_in)
                if rank is None:
                    self._param(f"mogrify_l{layer}_r{i}", out, inp)
                else:
                    self._param(f"mogrify_l{layer}_r{i}_a", out, rank)
                    self._param(f"mogrify_l{layer}_r{i}_b", rank, inp)

    def mogrifier(self, layer: int, i: int) -> torch.Tensor:
        """``Q^i`` (odd ``i``) or ``R^i`` (even) of ``layer``: (out, in)."""
        if self.rank is None:
            return getattr(self, f"mogrify_l{layer}_r{i}")
        return getattr(self, f"mogrify_l{layer}_r{i}_a") @ getattr(self, f"mogrify_l{layer}_r{i}_b")

    def layer(self, layer: int, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        w_ih, w_hh = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_hh_l{layer}")
        bias = getattr(self, f"bias_ih_l{layer}") + getattr(self, f"bias_hh_l{layer}")
        mats = [self.mogrifier(layer, i).T for i in range(1, self.rounds + 1)]
        out, h, c = self.loop(mogrifier_steps)(x, state[0], state[1], w_ih.T, w_hh.T, bias, mats)
        return out, (h, c)


def mogrifier_steps(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    w_ih_t: torch.Tensor,
    w_hh_t: torch.Tensor,
    bias: torch.Tensor,
    mats_t: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Mogrifier LSTM layer over ``x`` (B, T, I) from ``(h, c)`` (B, H): its outputs
    (B, T, H) and the last ``h``, ``c``. The matrices come transposed (``W^T``; ``mats_t``:
    ``Q^1, R^2, Q^3, ...`` transposed), so that the loop holds plain products: scripted and
    exported, a matrix taken from the list inside the loop has no known rank, and torch's ONNX
    ``t()`` (what ``F.linear`` uses) leaves a tensor of unknown rank as it is: the file failed
    in onnxruntime with a shape mismatch."""
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        for i in range(len(mats_t)):
            if i % 2 == 0:  # odd rounds (1, 3, ...) gate x
                xt = 2 * torch.sigmoid(h @ mats_t[i]) * xt
            else:
                h = 2 * torch.sigmoid(xt @ mats_t[i]) * h
        i_, f_, g_, o_ = (xt @ w_ih_t + h @ w_hh_t + bias).chunk(4, 1)
        c = torch.sigmoid(f_) * c + torch.sigmoid(i_) * torch.tanh(g_)
        h = torch.sigmoid(o_) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), h, c


class _MinCell(_Layers):
    """A minimal cell: ``gates`` pre-activations per layer from ``x`` alone, the recurrence
    ``h_t = a_t h_{t-1} + b_t`` given as ``log a``, ``log b``. ``form`` picks how it is
    computed: ``auto`` (the scan in training, the recurrence in evaluation), ``scan`` or
    ``sequential``."""

    gates = 0

    def __init__(self, *sizes, **options):
        super().__init__(*sizes, **options)
        self.form = "auto"
        for layer, size_in in self.layer_inputs():
            self._param(f"weight_ih_l{layer}", self.gates * self.hidden_size, size_in)
            self._param(f"bias_ih_l{layer}", self.gates * self.hidden_size)

    def coefficients(self, pre: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def layer(self, layer: int, x: torch.Tensor, h0: torch.Tensor):
        w, b = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}")
        pre = F.linear(x, w, b)  # in float32 at least, whatever autocast gave
        pre = pre.to(torch.promote_types(pre.dtype, torch.float32)).chunk(self.gates, -1)
        log_a, log_b = self.coefficients(pre)
        form = self.form if self.form != "auto" else "scan" if self.training else "sequential"
        out = scan(log_a, log_b, h0) if form == "scan" else self.loop(sequential)(log_a, log_b, h0)
        return out, out[:, -1]


class MinGRU(_MinCell):
    """minGRU; ``weight_ih`` holds ``W_z`` then ``W_h``."""

    gates = 2

    def coefficients(self, pre):
        z, h = pre
        return -F.softplus(z), -F.softplus(-z) + log_g(h)  # log(1 - z_t), log(z_t h~_t)


class MinLSTM(_MinCell):
    """minLSTM; ``weight_ih`` holds ``W_f``, ``W_i`` then ``W_h``."""

    gates = 3

    def coefficients(self, pre):
        f, i, h = pre
        diff = F.softplus(-f) - F.softplus(-i)  # log i_t - log f_t
        return -F.softplus(diff), -F.softplus(-diff) + log_g(h)  # log f', log(i' h~)


def sequential(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` step by step: (B, T, H) coefficients, ``h0`` (B, H)."""
    a, b = log_a.exp(), log_b.exp()
    h, outs = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        outs.append(h)
    return torch.stack(outs, 1)


def scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The same ``h`` for every ``t`` at once, in log space (module docstring), accumulated in
    float64 and returned in the inputs' dtype. In float32, ``log A_t`` grows with ``t`` and
    ``log b_k - log A_k`` loses the digits that ``h_t`` needs: against the recurrence in
    float64, the float32 scan was off by 1.0e-5 at bptt 35, 4.6e-5 at 200 and 3.5e-4 at 1000
    (the recurrence in float32: 4e-7 to 6e-7), so training and evaluation computed different
    networks. In float64 the scan stays within 3.4e-7 at any of those lengths, for ~45% more
    time in the scan itself (CPU, 20 x 650 units)."""
    dtype = log_a.dtype
    log_a, log_b, h0 = log_a.double(), log_b.double(), h0.double()
    log_A = log_a.cumsum(1)  # log A_t
    summed = (log_A + torch.logcumsumexp(log_b - log_A, 1)).exp()
    return (summed + log_A.exp() * h0[:, None]).to(dtype)


CELL_CLASSES = {"mogrifier": MogrifierLSTM, "mingru": MinGRU, "minlstm": MinLSTM}
