"""BPTT written out (seqlm.analysis.bptt) against torch's autograd and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlm.analysis.bptt import Params, bptt, forward, truncated_bptt

K, H, T = 7, 5, 13


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, K, T + 1)
    return ids[:-1], ids[1:]


def autograd(p: Params, inputs, targets, s0, activation, window=None):
    """The same model in torch, float64; a window boundary detaches the state. Returns the
    loss of each window and its gradients."""
    f = torch.tanh if activation == "tanh" else torch.relu
    window = window or len(inputs)
    s = torch.zeros(H, dtype=torch.float64) if s0 is None else torch.tensor(s0)
    out = []
    for start in range(0, len(inputs), window):
        w = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
        s = s.detach()
        loss = torch.zeros((), dtype=torch.float64)
        for x, y in zip(inputs[start : start + window], targets[start : start + window]):
            onehot = torch.zeros(K, dtype=torch.float64)
            onehot[x] = 1.0
            s = f(w["U"] @ onehot + w["W"] @ s + w["b"])
            loss = loss - torch.log_softmax(w["V"] @ s + w["c"], 0)[y]
        grads = torch.autograd.grad(loss, list(w.values()))
        out.append((loss.item(), {k: g.numpy() for k, g in zip(w, grads)}))
    return out, s.detach().numpy()


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("window", [None, 1, 4, 5])
@pytest.mark.parametrize("carried", [False, True])
def test_every_gradient_equals_autograd(activation, window, carried):
    p = Params.init(K, H, seed=1)
    inputs, targets = data()
    s0 = np.random.default_rng(2).uniform(-0.5, 0.5, H) if carried else None
    if window is None:
        loss, grads, last = bptt(p, inputs, targets, s0, activation)
        ours = [(loss, grads)]
    else:
        ours, last = truncated_bptt(p, inputs, targets, window, s0, activation)
    theirs, their_last = autograd(p, inputs, targets, s0, activation, window)
    assert len(ours) == len(theirs) == (1 if window is None else -(-T // window))
    for (loss, grads), (their_loss, their_grads) in zip(ours, theirs):
        assert loss == pytest.approx(their_loss, abs=1e-10)
        for name, g in grads.items():
            np.testing.assert_allclose(g, their_grads[name], rtol=0, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(last, their_last, rtol=0, atol=1e-12)


def test_truncation_changes_the_gradient_of_the_recurrence_only_where_it_cuts():
    """Summed over windows, truncated gradients of V and c equal the full ones (they never
    cross time); those of W differ (the cut removes paths through time)."""
    p = Params.init(K, H, seed=3)
    inputs, targets = data(4)
    _, full, _ = bptt(p, inputs, targets)
    windows, _ = truncated_bptt(p, inputs, targets, 4)
    summed = {name: sum(g[name] for _, g in windows) for name in ("V", "c", "W")}
    np.testing.assert_allclose(summed["V"], full.V, atol=1e-12)
    np.testing.assert_allclose(summed["c"], full.c, atol=1e-12)
    assert np.abs(summed["W"] - full.W).max() > 1e-4


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradients_match_central_finite_differences(activation):
    p = Params.init(3, 2, seed=5)
    rng = np.random.default_rng(6)
    inputs, targets = rng.integers(0, 3, 4), rng.integers(0, 3, 4)
    _, grads, _ = bptt(p, inputs, targets, activation=activation)
    eps = 1e-6
    for name, w in p.items():
        numeric = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            keep = w[i]
            w[i] = keep + eps
            up = forward(p, inputs, targets, activation=activation).loss
            w[i] = keep - eps
            down = forward(p, inputs, targets, activation=activation).loss
            w[i] = keep
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_bad_activation_and_window_are_named():
    p = Params.init(K, H)
    inputs, targets = data()
    with pytest.raises(ValueError, match="activation='sigmoid' is not one of tanh, relu"):
        bptt(p, inputs, targets, activation="sigmoid")
    with pytest.raises(ValueError, match="window=0 must be >= 1"):
        truncated_bptt(p, inputs, targets, 0)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_error_sent_into_the_carried_state_equals_autograd(activation):
    from seqlm.analysis.bptt import backward

    p = Params.init(K, H, seed=7)
    inputs, targets = data(8)
    s0 = np.random.default_rng(9).uniform(0, 0.5, H)
    ours = backward(p, forward(p, inputs, targets, s0, activation), activation)[1]
    f = torch.tanh if activation == "tanh" else torch.relu
    w = {k: torch.tensor(v) for k, v in p.items()}
    s = start = torch.tensor(s0, requires_grad=True)
    loss = torch.zeros((), dtype=torch.float64)
    for x, y in zip(inputs, targets):
        s = f(w["U"][:, x] + w["W"] @ s + w["b"])
        loss = loss - torch.log_softmax(w["V"] @ s + w["c"], 0)[y]
    (theirs,) = torch.autograd.grad(loss, [start])
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-10)
