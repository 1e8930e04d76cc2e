"""The networks against the tutorial's equations, written out by hand with the model's own
weights, and the properties a language model must have (causality, blindness to x_t)."""

from __future__ import annotations

import pytest
import torch
from conftest import preset

from seqlm.errors import SeqlmError
from seqlm.models import RecurrentLM
from seqlm.models.recurrent import CELLS

V, E, H, B, T = 13, 5, 7, 3, 6


def hand_forward(model: RecurrentLM, tokens: torch.Tensor) -> torch.Tensor:
    """Plain loops over time and layers, gate equations as in the papers (torch's gate order).
    Returns the decoder's logits (B, T, V)."""
    x = model.embedding.weight[tokens]  # (B, T, E)
    for layer in range(model.num_layers):
        W_ih = getattr(model.rnn, f"weight_ih_l{layer}")  # U
        W_hh = getattr(model.rnn, f"weight_hh_l{layer}")  # W
        b_ih = getattr(model.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(model.rnn, f"bias_hh_l{layer}")
        s = torch.zeros(tokens.shape[0], model.hidden_size)
        c = torch.zeros_like(s)
        outs = []
        for t in range(tokens.shape[1]):
            xt = x[:, t]
            if model.cell == "rnn":  # s_t = f(U x_t + W s_{t-1})
                s = torch.tanh(xt @ W_ih.T + b_ih + s @ W_hh.T + b_hh)
            elif model.cell == "lstm":  # Hochreiter & Schmidhuber; forget gate of Gers et al.
                i_, f_, g_, o_ = (xt @ W_ih.T + b_ih + s @ W_hh.T + b_hh).chunk(4, dim=1)
                i, f, o = torch.sigmoid(i_), torch.sigmoid(f_), torch.sigmoid(o_)
                c = f * c + i * torch.tanh(g_)
                s = o * torch.tanh(c)
            else:  # GRU, Cho et al. (2014)
                xr, xz, xn = (xt @ W_ih.T + b_ih).chunk(3, dim=1)
                hr, hz, hn = (s @ W_hh.T + b_hh).chunk(3, dim=1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                s = (1 - z) * n + z * s
            outs.append(s)
        x = torch.stack(outs, dim=1)
    return model.decoder(x)  # o_t = softmax(V s_t) up to the softmax


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_recurrence_equals_hand_written_equations(cell, layers):
    torch.manual_seed(0)
    model = preset("model", cell, vocab_size=V, emb_size=E, hidden_size=H, num_layers=layers).eval()
    tokens = torch.randint(V, (B, T))
    logits, _ = model(tokens)
    torch.testing.assert_close(logits, hand_forward(model, tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", [*CELLS])
def test_left_to_right_model_is_causal(cell):
    torch.manual_seed(1)
    model = preset("model", cell, vocab_size=V, emb_size=E, hidden_size=H, num_layers=2).eval()
    tokens = torch.randint(V, (B, T))
    changed = tokens.clone()
    changed[:, 3] = (changed[:, 3] + 1) % V
    a, _ = model(tokens)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # before the change: identical
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-4  # from it on: the input matters


@pytest.mark.parametrize("cell", [*CELLS])
def test_carried_state_equals_one_long_pass(cell):
    torch.manual_seed(2)
    model = preset("model", cell, vocab_size=V, emb_size=E, hidden_size=H, num_layers=2).eval()
    tokens = torch.randint(V, (B, 4 * T))
    whole, _ = model(tokens)
    state, parts = None, []
    for i in range(0, 4 * T, 5):  # uneven windows, like variable-length BPTT
        out, state = model(tokens[:, i : i + 5], state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=1e-5)


def _cloze_batch(lengths):
    """Rows `<eos> w.. <eos> <eos>` padded to one width, as SentenceBatches makes them."""
    width = max(lengths)
    tokens = torch.randint(2, V, (len(lengths), width))
    for row, n in enumerate(lengths):
        tokens[row, 0] = 1
        tokens[row, n - 1] = 1
    return tokens, torch.tensor(lengths)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cloze_model_never_sees_the_token_it_predicts(cell):
    torch.manual_seed(3)
    model = preset(
        "model", "birnn", vocab_size=V, cell=cell, emb_size=E, hidden_size=H, num_layers=2
    ).eval()
    tokens, lengths = _cloze_batch([9, 7, 5])
    base = model(tokens, lengths)
    for t in range(1, 4):  # target row t-1 predicts tokens[:, t]
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 3) % V
        out = model(changed, lengths)
        torch.testing.assert_close(out[:, t - 1], base[:, t - 1])  # blind to x_t itself
        # ... but the predictions on both sides of it do read it
        if t >= 2:
            assert (out[:, t - 2] - base[:, t - 2]).abs().max() > 1e-5
        assert (out[:, t] - base[:, t]).abs().max() > 1e-5


def test_cloze_model_equals_the_two_directions_computed_separately():
    """o_t = V s_{t-1} + V' s'_{t+1}, with s' run over each row's own reversed words."""
    torch.manual_seed(4)
    model = preset("model", "birnn", vocab_size=V, cell="gru", emb_size=E, hidden_size=H).eval()
    tokens, lengths = _cloze_batch([8, 5])
    out = model(tokens, lengths)
    for row, n in enumerate(lengths.tolist()):
        x = model.embedding(tokens[row : row + 1, :n])
        fwd, _ = model.fwd(x)
        bwd, _ = model.bwd(x.flip(1))
        bwd = bwd.flip(1)
        for t in range(1, n - 1):
            expect = model.dec_fwd(fwd[0, t - 1]) + model.dec_bwd(bwd[0, t + 1])
            torch.testing.assert_close(out[row, t - 1], expect, atol=1e-5, rtol=1e-5)
    # padding after a short row changes nothing in it
    short = model(tokens[1:, :5], lengths[1:])
    torch.testing.assert_close(out[1, :3], short[0, :3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cell": "lstmm"}, "model.cell='lstmm' is not one of rnn, lstm, gru"),
        ({"nonlinearity": "sigmoid"}, "model.nonlinearity='sigmoid'"),
        ({"num_layers": 0}, "model.num_layers=0"),
        ({"emb_dropout": 1.5}, "model.emb_dropout=1.5"),
        ({"tie_weights": True, "emb_size": 4}, "model.tie_weights=true needs"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(SeqlmError, match=message.replace("(", r"\(").replace(".", r"\.")):
        preset("model", "lstm", vocab_size=V, **{"hidden_size": H, **kwargs})


def test_weight_tying_shares_the_matrix():
    model = preset("model", "lstm", vocab_size=V, emb_size=H, hidden_size=H, tie_weights=True)
    assert model.decoder.weight.data_ptr() == model.embedding.weight.data_ptr()
