"""Gradients through time (seqlm.analysis.gradflow, the gradients command) against hand
computations."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, preset

from seqlm.analysis.gradflow import gradient_norms, windows_of
from seqlm.commands import gradients
from seqlm.commands.train import train
from seqlm.errors import SeqlmError

V, E, H, K = 11, 4, 6, 7


def test_windows_follow_the_definition():
    ids = np.arange(50)
    inputs, targets = windows_of(ids, lags=K, windows=64)
    n = (50 - 1) // (K + 1)  # a window needs its K+1 inputs and the token after them
    assert inputs.shape == (n, K + 1)
    for j in range(n):
        assert inputs[j].tolist() == list(range(j * (K + 1), j * (K + 1) + K + 1))
        assert targets[j] == j * (K + 1) + K + 1
    assert windows_of(ids, lags=K, windows=2)[0].shape == (2, K + 1)


@pytest.mark.parametrize("layers", [1, 2])
def test_g_k_equals_autograd_through_a_hand_unrolled_elman_rnn(layers):
    """s_t = tanh(U x_t + b + W s_{t-1}) written out per layer; dℓ/ds_{t-k} of the top layer
    taken with torch.autograd.grad on that loop."""
    torch.manual_seed(0)
    net = preset("model", "rnn", vocab_size=V, emb_size=E, hidden_size=H, num_layers=layers)
    ids = np.random.default_rng(1).integers(0, V, 5 * (K + 1) + 1)
    ours = gradient_norms(net, ids, lags=K, windows=5)
    inputs, targets = windows_of(ids, K, 5)
    for row in range(5):
        states = [torch.zeros(H) for _ in range(layers)]
        tops = []
        for t in range(K + 1):
            x = net.embedding.weight[inputs[row, t]]
            for layer in range(layers):
                W_ih, W_hh = (getattr(net.rnn, f"weight_{w}_l{layer}") for w in ("ih", "hh"))
                b = getattr(net.rnn, f"bias_ih_l{layer}") + getattr(net.rnn, f"bias_hh_l{layer}")
                states[layer] = torch.tanh(W_ih @ x + b + W_hh @ states[layer])
                x = states[layer]
            tops.append(states[-1])
        loss = F.cross_entropy(net.decoder(tops[-1])[None], targets[row : row + 1])
        grads = torch.autograd.grad(loss, tops)
        hand = [grads[K - k].norm().item() for k in range(K + 1)]
        np.testing.assert_allclose(ours[row], hand, rtol=1e-5, atol=1e-9)


def test_g_k_equals_autograd_through_a_hand_unrolled_awd_lstm():
    """AWD-LSTM's shape: per-layer modules of sizes 8 and 6, tied, with weight drop and
    locked dropout (off in evaluation). The LSTM's gates written out per layer; dℓ/ds_{t-k}
    of the top layer's h taken with torch.autograd.grad on that loop."""
    torch.manual_seed(3)
    net = preset(
        "model",
        "lstm",
        vocab_size=V,
        emb_size=6,
        num_layers=2,
        hidden_sizes=[8, 6],
        tie_weights=True,
        wdrop=0.5,
        dropouth=0.3,
        dropouti=0.2,
    )
    net.train()  # gradient_norms must switch every dropout off by itself
    ids = np.random.default_rng(4).integers(0, V, 4 * (K + 1) + 1)
    ours = gradient_norms(net, ids, lags=K, windows=4)
    assert net.training  # and put the mode back
    inputs, targets = windows_of(ids, K, 4)
    layers = net.rnn.layers
    for row in range(4):
        h = [torch.zeros(layer.hidden_size) for layer in layers]
        c = [torch.zeros(layer.hidden_size) for layer in layers]
        tops = []
        for t in range(K + 1):
            x = net.embedding.weight[inputs[row, t]]
            for i, layer in enumerate(layers):
                gates = (
                    layer.weight_ih_l0 @ x
                    + layer.bias_ih_l0
                    + layer.weight_hh_l0 @ h[i]
                    + layer.bias_hh_l0
                )
                ig, fg, gg, og = gates.chunk(4)
                c[i] = torch.sigmoid(fg) * c[i] + torch.sigmoid(ig) * torch.tanh(gg)
                h[i] = torch.sigmoid(og) * torch.tanh(c[i])
                x = h[i]
            tops.append(h[-1])
        loss = F.cross_entropy(net.decoder(tops[-1])[None], targets[row : row + 1])
        grads = torch.autograd.grad(loss, tops)
        hand = [grads[K - k].norm().item() for k in range(K + 1)]
        np.testing.assert_allclose(ours[row], hand, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("a", [0.5, 0.9, 1.2])
def test_a_linear_rnn_with_w_equal_a_times_identity_gives_a_to_the_k(a):
    """ReLU with every pre-activation positive is the identity, so
    dℓ/ds_{t-k} = (Wᵀ)^k dℓ/ds_t = a^k dℓ/ds_t: g_k / g_0 = a^k exactly."""
    net = preset(
        "model", "rnn", vocab_size=V, emb_size=E, hidden_size=H, nonlinearity="relu"
    ).double()
    with torch.no_grad():
        net.rnn.weight_hh_l0.copy_(a * torch.eye(H, dtype=torch.float64))
        net.rnn.weight_ih_l0.zero_()
        net.rnn.bias_ih_l0.fill_(1.0)  # net_t = 1 + a s_{t-1} > 0 since s >= 0
        net.rnn.bias_hh_l0.zero_()
    ids = np.random.default_rng(2).integers(0, V, 3 * (K + 1) + 1)
    g = gradient_norms(net, ids, lags=K, windows=3)
    np.testing.assert_allclose(
        g / g[:, :1], np.broadcast_to(a ** np.arange(K + 1), g.shape), rtol=1e-12
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("grad-runs")
    out = {}
    for name in ("rnn", "lstm", "birnn", "kn2"):
        small = ["logger=none"] if name == "kn2" else TINY_TRAIN
        cfg = make_config("train", [f"model={name}", *SMALL_AGREEMENT, *small])
        train(cfg, run_dir=base / name)
        out[name] = base / name
    return base, out


def test_gradients_command_writes_the_curves_of_trained_and_untrained_networks(runs, tmp_path):
    base, run = runs
    cfg = make_config(
        "gradients",
        [
            f"runs=[{run['rnn']},{run['lstm']}]",
            "lags=12",
            "model=gru",
            "data=agreement",
            "data.sizes=[6000,1500,1500]",
            f"out={tmp_path}",
        ],
    )
    curves = gradients.run(cfg)
    assert [(c.run, c.cell) for c in curves] == [
        ("rnn", "rnn"),
        ("lstm", "lstm"),
        ("untrained", "gru"),
    ]
    with (tmp_path / "gradients.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 13 and list(rows[0]) == ["run", "cell", "k", "mean", "std"]
    # the CSV holds what the definition gives for the rnn run, recomputed here
    from seqlm.scorers import load_scorer, on_data

    data, scorer = on_data(load_scorer(run["rnn"]))
    g = gradient_norms(scorer.net, data.ids["test"], 12, 64)
    csv_rnn = [float(r["mean"]) for r in rows if r["run"] == "rnn"]
    np.testing.assert_allclose(csv_rnn, g.mean(0), rtol=1e-9)
    png = (tmp_path / "gradients.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_the_gradients_plot_marks_an_underflow_and_a_rerun_says_it_replaces(tmp_path, capsys):
    """A log axis cannot show a gradient that underflowed to 0: the curve stops and a marker
    says from which k; writing into a folder that holds earlier curves says so."""
    from matplotlib.axes import Axes

    marks = []
    real = Axes.annotate
    Axes.annotate = lambda self, text, *a, **kw: marks.append(text) or real(self, text, *a, **kw)
    try:
        vanishing = gradients.Curve(
            "rnn", "rnn", np.array([1.0, 1e-5, 1e-20, 0.0, 0.0]), np.zeros(5)
        )
        gradients.write([vanishing], tmp_path)
        gradients.write([vanishing], tmp_path)
    finally:
        Axes.annotate = real
    assert marks == ["0 from k=3", "0 from k=3"]
    out = capsys.readouterr().out
    assert out.count("replacing the gradients.csv and gradients.png of an earlier run") == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["lags=0"], "lags=0 must be an integer >= 1"),
        (["split=train"], "split='train' is not one of valid, test"),
        (["runs=[nowhere]"], "ckpt='nowhere': no such file or run directory"),
        (["runs=[RUN:birnn]"], "is a bidirectional cloze model"),
        (["runs=[RUN:kn2]"], "is an n-gram model: it has no hidden state"),
        (["model=rnn"], "needs data=NAME"),
        ([], "give run directories, or model=NAME data=NAME"),
    ],
)
def test_bad_gradients_requests_are_one_line(runs, overrides, message, tmp_path):
    base, run = runs
    overrides = [
        o.replace("RUN:birnn", str(run["birnn"])).replace("RUN:kn2", str(run["kn2"]))
        for o in overrides
    ]
    if (
        not any(o.startswith("runs=") for o in overrides)
        and overrides != ["model=rnn"]
        and overrides
    ):
        overrides.append(f"runs=[{run['rnn']}]")
    with pytest.raises(SeqlmError, match=message):
        gradients.run(make_config("gradients", [*overrides, f"out={tmp_path}"]))


def test_gradient_flow_callback_logs_the_curve_while_training(tmp_path):
    import json

    cfg = make_config(
        "train",
        [
            *SMALL_AGREEMENT,
            *TINY_TRAIN,
            "model=rnn",
            "logger=csv",
            "+callbacks=gradient_flow",
            "callbacks.gradient_flow.every_n_steps=10",
            "callbacks.gradient_flow.lags=20",
            "trainer.log_every_n_steps=1",
        ],
    )
    m = train(cfg, run_dir=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    flows = [x for x in lines if "gradient_flow" in x]
    steps = m["train/steps"]
    assert [x["step"] for x in flows] == list(range(10, steps + 1, 10))
    assert all(len(x["gradient_flow"]["mean"]) == 21 for x in flows)
    assert any("val/ppl" in x for x in lines)  # validation lines are still there
    rows = list(csv.DictReader((tmp_path / "logs" / "metrics.csv").open()))
    logged = [float(r["grad_flow/g_20"]) for r in rows if r.get("grad_flow/g_20")]
    assert logged == pytest.approx([x["gradient_flow"]["mean"][20] for x in flows], rel=1e-6)
