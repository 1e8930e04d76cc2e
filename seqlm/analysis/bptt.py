"""Back-propagation through time for the tutorial's Elman RNN language model, written out in
NumPy: a reference and a teaching aid (training uses torch). ``docs/bptt.md`` sets each
equation beside the line that computes it; tests check every gradient against torch's
autograd (to 1e-10 in float64) and against finite differences.

The model, for a word ``x_t`` (an id: ``U x_t`` is column ``x_t`` of ``U``, the one-hot
product) and its target ``y_t`` (the next word)::

    net_t = U x_t + W s_{t-1} + b          s_t = f(net_t)          (H,)
    o_t   = softmax(V s_t + c)                                      (|V|,)
    L     = sum_t -log o_t[y_t]                                     (cross-entropy, nats)

Going back, the error term of step ``t`` is ``delta_t = dL/dnet_t``::

    dL/d(V s_t + c) = o_t - onehot(y_t)
    delta_t = f'(net_t) * (V^T (o_t - onehot(y_t)) + W^T delta_{t+1})

and each weight's gradient is its per-step gradient summed over the steps::

    dV = sum_t (o_t - onehot(y_t)) s_t^T     dc = sum_t (o_t - onehot(y_t))
    dU[:, x_t] += delta_t                    dW = sum_t delta_t s_{t-1}^T     db = sum_t delta_t

Truncated BPTT cuts the sequence into windows: the state ``s`` is carried from one window into
the next, but no error term crosses a window boundary (``delta_{t+1}`` is 0 at a window's last
step), so each window gives its own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

ACTIVATIONS = ("tanh", "relu")


@dataclass
class Params:
    """The weights, in the tutorial's names. H: state size, K: vocabulary size."""

    U: np.ndarray  # (H, K) input -> state
    W: np.ndarray  # (H, H) state -> state
    b: np.ndarray  # (H,)
    V: np.ndarray  # (K, H) state -> output
    c: np.ndarray  # (K,)

    @classmethod
    def init(cls, vocab: int, hidden: int, seed: int = 0, scale: float = 0.5) -> Params:
        rng = np.random.default_rng(seed)

        def draw(*shape):
            return rng.uniform(-scale, scale, shape)

        return cls(
            draw(hidden, vocab),
            draw(hidden, hidden),
            draw(hidden),
            draw(vocab, hidden),
            draw(vocab),
        )

    def zeros_like(self) -> Params:
        return Params(*(np.zeros_like(getattr(self, f.name)) for f in fields(self)))

    def items(self) -> list[tuple[str, np.ndarray]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)


def _f(net: np.ndarray, activation: str) -> np.ndarray:
    if activation == "tanh":
        return np.tanh(net)
    if activation == "relu":
        return np.maximum(net, 0.0)
    raise ValueError(f"activation={activation!r} is not one of {', '.join(ACTIVATIONS)}")


def _df(net: np.ndarray, s: np.ndarray, activation: str) -> np.ndarray:
    """f'(net), from net and s = f(net)."""
    return 1.0 - s**2 if activation == "tanh" else (net > 0).astype(net.dtype)


@dataclass
class Forward:
    """What the backward pass needs from the forward pass of one window."""

    inputs: np.ndarray  # (T,) word ids x_t
    targets: np.ndarray  # (T,) word ids y_t
    s: np.ndarray  # (T+1, H): s[0] is the state carried in, s[t+1] = s_t of step t
    net: np.ndarray  # (T, H)
    o: np.ndarray  # (T, K) softmax outputs
    loss: float  # sum of -log o_t[y_t]


def forward(
    p: Params,
    inputs: np.ndarray,
    targets: np.ndarray,
    s0: np.ndarray | None = None,
    activation: str = "tanh",
) -> Forward:
    T, H = len(inputs), p.W.shape[0]
    s = np.zeros((T + 1, H))
    s[0] = 0.0 if s0 is None else s0
    net = np.zeros((T, H))
    o = np.zeros((T, p.V.shape[0]))
    for t in range(T):
        net[t] = p.U[:, inputs[t]] + p.W @ s[t] + p.b  # U x_t + W s_{t-1} + b
        s[t + 1] = _f(net[t], activation)  # s_t = f(net_t)
        z = p.V @ s[t + 1] + p.c
        z = np.exp(z - z.max())
        o[t] = z / z.sum()  # o_t = softmax(V s_t + c)
    loss = -float(np.log(o[np.arange(T), targets]).sum())
    return Forward(np.asarray(inputs), np.asarray(targets), s, net, o, loss)


def backward(p: Params, fw: Forward, activation: str = "tanh") -> tuple[Params, np.ndarray]:
    """The gradients of ``fw.loss`` with respect to every weight, and with respect to the state
    carried in (``s[0]``), by sending each step's error term back through time."""
    g = p.zeros_like()
    T = len(fw.inputs)
    delta_next = np.zeros(p.W.shape[0])  # delta_{t+1}; zero after the window's last step
    for t in reversed(range(T)):
        dz = fw.o[t].copy()
        dz[fw.targets[t]] -= 1.0  # dL/d(V s_t + c) = o_t - onehot(y_t)
        g.V += np.outer(dz, fw.s[t + 1])
        g.c += dz
        ds = p.V.T @ dz + p.W.T @ delta_next  # dL/ds_t: from the output and from step t+1
        delta = ds * _df(fw.net[t], fw.s[t + 1], activation)  # delta_t = dL/dnet_t
        g.U[:, fw.inputs[t]] += delta
        g.W += np.outer(delta, fw.s[t])  # s[t] is s_{t-1}
        g.b += delta
        delta_next = delta
    return g, p.W.T @ delta_next  # dL/ds_{-1}: the error term sent into the carried state


def bptt(
    p: Params,
    inputs: np.ndarray,
    targets: np.ndarray,
    s0: np.ndarray | None = None,
    activation: str = "tanh",
) -> tuple[float, Params, np.ndarray]:
    """Full BPTT over one sequence: (loss, gradients, the last state)."""
    fw = forward(p, inputs, targets, s0, activation)
    grads, _ = backward(p, fw, activation)
    return fw.loss, grads, fw.s[-1]


def truncated_bptt(
    p: Params,
    inputs: np.ndarray,
    targets: np.ndarray,
    window: int,
    s0: np.ndarray | None = None,
    activation: str = "tanh",
) -> tuple[list[tuple[float, Params]], np.ndarray]:
    """Truncated BPTT: the sequence in windows of ``window`` steps, the state carried across
    windows (its value only, no gradient). Returns each window's (loss, gradients), and the
    state after the last window (what the next call carries in)."""
    if window < 1:
        raise ValueError(f"window={window} must be >= 1")
    out, s = [], s0
    for start in range(0, len(inputs), window):
        sl = slice(start, start + window)
        loss, grads, s = bptt(p, inputs[sl], targets[sl], s, activation)
        out.append((loss, grads))
    return out, s
