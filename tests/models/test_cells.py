"""The cells after the tutorial (Mogrifier LSTM, minGRU, minLSTM) against their papers' equations
written out by hand with the model's own weights; the minimal cells' parallel scan against
their step-by-step recurrence; and each cell through the paths a network takes (carried state,
weight drop, the step API, gradients through time)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import preset

from seqlm.analysis.gradflow import gradient_norms, windows_of
from seqlm.errors import SeqlmError
from seqlm.models.cells import MinGRU, MinLSTM, MogrifierLSTM, log_g, scan, sequential

V, E, H, B, T, K = 13, 5, 7, 3, 6, 7
NEW = ["mogrifier", "mingru", "minlstm"]


def g(v: torch.Tensor) -> torch.Tensor:
    """Feng et al.'s g: v + 1/2 for v >= 0, sigmoid(v) below."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def hand_layer(rnn, cell: str, layer: int, x: torch.Tensor, state=None):
    """One layer over (B, T, I) from ``state`` (s, c) or zeros, a loop over time, the papers'
    equations. Returns the outputs (B, T, H) and the last (s, c)."""
    W_ih = getattr(rnn, f"weight_ih_l{layer}")
    b_ih = getattr(rnn, f"bias_ih_l{layer}")
    s = torch.zeros(x.shape[0], rnn.hidden_size, dtype=x.dtype)
    s, c = state if state is not None else (s, torch.zeros_like(s))
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if cell == "mogrifier":  # Melis et al. (2020), eq. 1-2, then the LSTM
            h_prev = s
            for i in range(1, rnn.rounds + 1):
                if rnn.rank is None:
                    M = getattr(rnn, f"mogrify_l{layer}_r{i}")
                else:
                    M = getattr(rnn, f"mogrify_l{layer}_r{i}_a") @ getattr(
                        rnn, f"mogrify_l{layer}_r{i}_b"
                    )
                if i % 2 == 1:  # x^i = 2 sigma(Q^i h^{i-1}_prev) * x^{i-2}
                    xt = 2 * torch.sigmoid(h_prev @ M.T) * xt
                else:  # h^i_prev = 2 sigma(R^i x^{i-1}) * h^{i-2}_prev
                    h_prev = 2 * torch.sigmoid(xt @ M.T) * h_prev
            W_hh = getattr(rnn, f"weight_hh_l{layer}")
            b_hh = getattr(rnn, f"bias_hh_l{layer}")
            gates = xt @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh
            i_, f_, g_, o_ = gates.chunk(4, dim=1)
            c = torch.sigmoid(f_) * c + torch.sigmoid(i_) * torch.tanh(g_)
            s = torch.sigmoid(o_) * torch.tanh(c)
        elif cell == "mingru":  # Feng et al. (2024), section 3.2 (log-space version's g)
            z_, h_ = (xt @ W_ih.T + b_ih).chunk(2, dim=1)
            z = torch.sigmoid(z_)
            s = (1 - z) * s + z * g(h_)
        else:  # minLSTM, section 3.1, with the normalised gates f', i'
            f_, i_, h_ = (xt @ W_ih.T + b_ih).chunk(3, dim=1)
            f, i = torch.sigmoid(f_), torch.sigmoid(i_)
            s = f / (f + i) * s + i / (f + i) * g(h_)
        outs.append(s)
    return torch.stack(outs, 1), (s, c)


def hand_forward(model, tokens: torch.Tensor) -> torch.Tensor:
    x = model.embedding.weight[tokens]
    for layer in range(model.num_layers):
        x = hand_layer(model.rnn, model.cell, layer, x)[0]
    return model.decoder(x)


@pytest.mark.parametrize("cell", NEW)
@pytest.mark.parametrize("layers", [1, 2])
def test_recurrence_equals_hand_written_equations(cell, layers):
    torch.manual_seed(0)
    model = preset("model", cell, vocab_size=V, emb_size=E, hidden_size=H, num_layers=layers)
    for form in ["sequential", "scan"] if cell != "mogrifier" else ["loop"]:
        if form != "loop":
            model.rnn.form = form
        tokens = torch.randint(V, (B, T))
        logits, _ = model.eval()(tokens)
        torch.testing.assert_close(logits, hand_forward(model, tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rounds", [0, 1, 2, 5])
@pytest.mark.parametrize("rank", [None, 2])
def test_mogrifier_rounds_and_rank(rounds, rank):
    torch.manual_seed(1)
    rnn = MogrifierLSTM(E, H, 1, rounds=rounds, rank=rank).double()
    x = torch.randn(B, T, E, dtype=torch.float64)
    out, (h, c) = rnn(x)
    torch.testing.assert_close(out, hand_layer(rnn, "mogrifier", 0, x)[0])
    torch.testing.assert_close(h[0], out[:, -1])
    assert sum(n.startswith("mogrify_") for n, _ in rnn.named_parameters()) == rounds * (
        1 if rank is None else 2
    )


def test_mogrifier_with_no_rounds_is_torch_lstm():
    torch.manual_seed(2)
    mog = MogrifierLSTM(E, H, 2, rounds=0, rank=None)
    lstm = torch.nn.LSTM(E, H, 2, batch_first=True)
    lstm.load_state_dict(mog.state_dict())
    x = torch.randn(B, T, E)
    state = (torch.randn(2, B, H), torch.randn(2, B, H))
    (a, (ha, ca)), (b, (hb, cb)) = mog(x, state), lstm(x, state)
    for ours, torchs in ((a, b), (ha, hb), (ca, cb)):
        torch.testing.assert_close(ours, torchs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_parallel_scan_equals_sequential_form(cls):
    """The issue's check: both forms of the same cell, same input, to 1e-6; from a state of
    either sign, over a long window; float64, and float32 at a BPTT window's length."""
    torch.manual_seed(3)
    rnn = cls(E, H, 2).double()
    x = torch.randn(B, 200, E, dtype=torch.float64) * 3
    h0 = torch.randn(2, B, H, dtype=torch.float64)
    outs = {}
    for form in ("scan", "sequential"):
        rnn.form = form
        outs[form] = rnn(x, h0)
    torch.testing.assert_close(outs["scan"][0], outs["sequential"][0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(outs["scan"][1], outs["sequential"][1], atol=1e-6, rtol=1e-6)
    rnn.float()
    x32, h32 = x[:, :35].float(), h0.float()
    rnn.form = "scan"
    a, _ = rnn(x32, h32)
    rnn.form = "sequential"
    b, _ = rnn(x32, h32)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_scan_gradient_equals_sequential_gradient():
    torch.manual_seed(4)
    log_a = F.logsigmoid(torch.randn(B, 50, H, dtype=torch.float64)).requires_grad_()
    log_b = torch.randn(B, 50, H, dtype=torch.float64).requires_grad_()
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    grads = []
    for f in (scan, sequential):
        (f(log_a, log_b, h0) * torch.linspace(-1, 1, H, dtype=torch.float64)).sum().backward()
        grads.append([t.grad.clone() for t in (log_a, log_b, h0)])
        for t in (log_a, log_b, h0):
            t.grad = None
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7)


def test_training_scans_and_evaluation_steps(monkeypatch):
    """form=auto: the scan in training, the recurrence in evaluation."""
    import seqlm.models.cells as cells

    called = []
    monkeypatch.setattr(cells, "scan", lambda *a: called.append("scan") or sequential(*a))
    rnn = MinGRU(E, H)
    x = torch.randn(B, T, E)
    rnn.train()(x)
    rnn.eval()(x)
    assert called == ["scan"]


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_scan_carries_state_across_windows(cell):
    """In training (the scan) as in evaluation (tests/models/test_models.py): windows with the state
    carried equal one long pass."""
    torch.manual_seed(5)
    model = preset("model", cell, vocab_size=V, emb_size=E, hidden_size=H, num_layers=2).train()
    tokens = torch.randint(V, (B, 4 * T))
    whole, _ = model(tokens)
    state, parts = None, []
    for i in range(0, 4 * T, 5):
        out, state = model(tokens[:, i : i + 5], state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=1e-5)


def test_mogrifier_weight_drop_masks_the_hidden_matrix():
    torch.manual_seed(7)
    model = preset(
        "model", "mogrifier", vocab_size=V, emb_size=E, hidden_size=H, num_layers=2, wdrop=0.5
    ).train()
    weights = model.rnn.layer_weights(model.rnn.layers[0])
    raw = model.rnn.layers[0].weight_hh_l0
    dropped = weights["weight_hh_l0"]
    zero = dropped == 0
    assert 0.3 < zero.float().mean() < 0.7
    torch.testing.assert_close(dropped[~zero], 2 * raw[~zero])
    assert weights["weight_ih_l0"] is model.rnn.layers[0].weight_ih_l0
    model(torch.randint(V, (B, T)))[0].sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "mingru", "wdrop": 0.3}, "model.cell=mingru has no hidden-to-hidden matrix"),
        ({"cell": "mogrifier", "mogrify_rounds": -1}, "model.mogrify_rounds=-1"),
        ({"cell": "mogrifier", "mogrify_rank": 0}, "model.mogrify_rank=0"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(SeqlmError, match=message):
        preset("model", "rnn", vocab_size=V, **kwargs)


@pytest.mark.parametrize("cell", NEW)
def test_cloze_model_takes_the_new_cells(cell):
    torch.manual_seed(8)
    model = preset(
        "model", "birnn", vocab_size=V, cell=cell, emb_size=E, hidden_size=H, num_layers=1
    ).eval()
    tokens = torch.randint(2, V, (2, 7))
    lengths = torch.tensor([7, 7])
    out = model(tokens, lengths)
    changed = tokens.clone()
    changed[:, 3] = (changed[:, 3] + 1) % V
    # row 2 predicts tokens[:, 3]: blind to it
    torch.testing.assert_close(model(changed, lengths)[:, 2], out[:, 2])


@pytest.mark.parametrize("cell", NEW)
def test_gradients_through_time_equal_the_hand_computation(cell):
    """g_k = |dl/ds_{t-k}| of ``gradient_norms``. For the minimal cells in closed form: the
    gates do not read s, so ds_t/ds_{t-1} = diag(a_t) (1 - z_t, or f_t / (f_t + i_t)) and
    dl/ds_{t-k} = a_{t-k+1} ... a_t dl/ds_t. For the Mogrifier, autograd through the
    hand-written step (the rounds put s_{t-1} into the gates, so no product form)."""
    torch.manual_seed(9)
    net = preset("model", cell, vocab_size=V, emb_size=E, hidden_size=H, num_layers=1)
    ids = np.random.default_rng(2).integers(0, V, 4 * (K + 1) + 1)
    ours = gradient_norms(net, ids, lags=K, windows=4)
    inputs, targets = windows_of(ids, K, 4)
    x = net.embedding.weight[inputs].detach()  # (4, K+1, E)
    if cell == "mogrifier":
        state, tops = None, []
        for t in range(K + 1):
            _, state = hand_layer(net.rnn, cell, 0, x[:, t : t + 1], state)
            tops.append(state[0])
        loss = F.cross_entropy(net.decoder(tops[-1]), targets, reduction="sum")
        hand = torch.stack([gr.norm(dim=1) for gr in torch.autograd.grad(loss, tops)], 1)
        hand = hand.flip(1).detach().numpy()
    else:
        W, b = net.rnn.weight_ih_l0, net.rnn.bias_ih_l0
        gates = torch.sigmoid(x @ W.T + b).detach()
        if cell == "mingru":
            a = 1 - gates[..., :H]
        else:
            f, i = gates[..., :H], gates[..., H : 2 * H]
            a = f / (f + i)
        top = hand_layer(net.rnn, cell, 0, x)[0][:, -1].detach().requires_grad_()
        loss = F.cross_entropy(net.decoder(top), targets, reduction="sum")
        (g_t,) = torch.autograd.grad(loss, top)
        hand = np.stack(
            [(g_t * a[:, K - k + 1 :].prod(1)).norm(dim=1).numpy() for k in range(K + 1)], 1
        )
    np.testing.assert_allclose(ours, hand, rtol=1e-4, atol=1e-9)


def test_a_bad_cell_option_is_refused_before_the_data(tmp_path):
    """One line naming the option, from the config alone (data.root points nowhere)."""
    from conftest import make_config

    from seqlm.commands.train import train

    cfg = make_config(
        "train",
        ["model=mingru", "model.wdrop=0.2", "data=ptb", f"data.root={tmp_path}/none"],
    )
    with pytest.raises(SeqlmError, match="model.wdrop=0.2: model.cell=mingru has no hidden"):
        train(cfg, run_dir=tmp_path / "run")


@pytest.mark.parametrize("T", [35, 200, 1000])
def test_the_scan_in_float32_stays_with_the_recurrence_at_any_window(T):
    # the float32 scan once drifted from the recurrence as the window grew (1e-5 at 35, 3.5e-4
    # at 1000): training and evaluation computed different networks
    g = torch.Generator().manual_seed(T)
    z = torch.randn(4, T, 64, dtype=torch.float64, generator=g) * 2
    h = torch.randn(4, T, 64, dtype=torch.float64, generator=g)
    log_a, log_b = -F.softplus(z), -F.softplus(-z) + log_g(h)
    h0 = torch.randn(4, 64, dtype=torch.float64, generator=g)
    truth = sequential(log_a, log_b, h0)  # float64
    fast = scan(log_a.float(), log_b.float(), h0.float())
    assert fast.dtype == torch.float32
    assert float((fast.double() - truth).abs().max()) < 1e-6
