"""AWD-LSTM's regularisers against hand computations: masks read back from the forward pass,
AR/TAR on numbers worked out by hand; the learning rate of variable-length windows. NT-ASGD is
tested in test_averaging.py."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, preset
from iterates import Iterates
from test_models import hand_forward

from seqlm.commands.train import train
from seqlm.errors import SeqlmError
from seqlm.models.regularisers import (
    LockedDropout,
    activation_penalty,
    contiguous_views,
    embedding_dropout,
)

V, E, B, T = 11, 6, 5, 9


def awd(**overrides):
    """A small LSTM with per-layer modules (sizes 8 and 6, tied to the 6-wide embedding)."""
    options = {
        "vocab_size": V,
        "emb_size": E,
        "num_layers": 2,
        "hidden_sizes": [8, E],
        "tie_weights": True,
        **overrides,
    }
    return preset("model", "lstm", **options)


# -- locked dropout and embedding dropout ----------------------------------------------------
def test_locked_dropout_shares_one_mask_across_time_and_not_across_sequences():
    torch.manual_seed(0)
    drop = LockedDropout(0.5).train()
    x = torch.ones(64, T, 10)
    y = drop(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0}  # kept entries scaled by 1 / (1 - p)
    assert torch.equal(y, y[:, :1].expand_as(y))  # every time step of a row: the same mask
    rows = {tuple(r[0].tolist()) for r in y}
    assert len(rows) > 50  # 64 rows, 2^10 possible masks: rows draw their own
    assert abs(float((y == 0).float().mean()) - 0.5) < 0.05
    assert not torch.equal(drop(x), y)  # a new mask every call
    assert torch.equal(drop.eval()(x), x)  # identity in evaluation


def test_embedding_dropout_drops_whole_word_types():
    torch.manual_seed(1)
    emb = torch.nn.Embedding(V, E)
    tokens = torch.randint(V, (B, 40))
    out = embedding_dropout(emb, tokens, 0.5, training=True)
    full = emb(tokens)
    dropped = set()
    for word in tokens.unique().tolist():
        at = tokens == word
        vectors = out[at]
        if torch.all(vectors == 0):
            dropped.add(word)
        else:  # kept everywhere, scaled by 1 / (1 - p)
            torch.testing.assert_close(vectors, 2 * full[at])
    assert 0 < len(dropped) < len(tokens.unique())
    assert torch.equal(embedding_dropout(emb, tokens, 0.5, training=False), full)


# -- weight drop ------------------------------------------------------------------------------
def _recording_hh(model):
    """Record the W_hh each layer's forward really uses (the hook runs inside the call)."""
    seen: list[list[torch.Tensor]] = [[] for _ in model.rnn.layers]
    for i, layer in enumerate(model.rnn.layers):
        layer.register_forward_pre_hook(
            lambda mod, args, i=i: seen[i].append(mod.weight_hh_l0.detach().clone())
        )
    return seen


def test_weight_drop_zeroes_w_hh_where_the_mask_says_and_gradients_reach_the_raw_weight():
    torch.manual_seed(2)
    p = 0.5
    model = awd(wdrop=p).train()
    seen = _recording_hh(model)
    raw = [layer.weight_hh_l0.detach().clone() for layer in model.rnn.layers]
    tokens = torch.randint(V, (B, T))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-contiguous weights" or any other warning
        logits, _ = model(tokens)
    for used, w in zip(seen, raw):
        [w_used] = used
        kept = w_used != 0
        torch.testing.assert_close(w_used[kept], w[kept] / (1 - p))  # kept, rescaled
        assert 0.35 < float((~kept).float().mean()) < 0.65
    # the forward pass equals the gate equations run with those effective matrices
    with torch.no_grad():
        undropped = awd(wdrop=0.0)
        undropped.load_state_dict(model.state_dict())
        for layer, w_used in zip(undropped.rnn.layers, [s[0] for s in seen]):
            layer.weight_hh_l0.copy_(w_used)
    torch.testing.assert_close(logits, hand_forward_stack(undropped, tokens), atol=1e-5, rtol=1e-5)
    # the gradient reaches the raw parameter, through the mask: zero where it dropped
    logits.sum().backward()
    for layer, used in zip(model.rnn.layers, seen):
        grad = layer.weight_hh_l0.grad
        assert grad is not None and grad.abs().sum() > 0
        assert torch.all(grad[used[0] == 0] == 0)
    # a fresh mask for the next batch
    model(tokens)
    assert not torch.equal(seen[0][0] == 0, seen[0][1] == 0)


def hand_forward_stack(model, tokens):
    """``hand_forward`` for per-layer modules: the same equations, layer by layer."""
    x = model.embedding.weight[tokens]
    for layer in model.rnn.layers:
        one = SimpleNamespace(
            embedding=SimpleNamespace(weight=x.reshape(-1, x.shape[-1])),
            num_layers=1,
            rnn=layer,
            hidden_size=layer.hidden_size,
            cell="lstm",
            decoder=torch.nn.Identity(),
        )
        x = hand_forward(one, torch.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2]))
    return model.decoder(x)


def test_weight_drop_is_off_in_evaluation_and_keeps_the_state_dict_keys():
    torch.manual_seed(3)
    model = awd(wdrop=0.5)
    plain = awd(wdrop=0.0)
    keys = list(model.state_dict())
    assert keys == list(plain.state_dict())  # one tensor per weight, the usual names
    assert sum(1 for _ in model.parameters()) == sum(1 for _ in plain.parameters())
    tokens = torch.randint(V, (B, T))
    model.train()(tokens)  # a training call changes nothing in the module
    assert list(model.state_dict()) == keys
    assert all(isinstance(layer.weight_hh_l0, torch.nn.Parameter) for layer in model.rnn.layers)
    plain.load_state_dict(model.state_dict())  # strict: loads in evaluation ...
    torch.testing.assert_close(model.eval()(tokens)[0], plain.eval()(tokens)[0])
    again = awd(wdrop=0.5).train()
    again.load_state_dict(model.state_dict())  # ... and into a model in training
    torch.testing.assert_close(again.eval()(tokens)[0], plain(tokens)[0])


def test_per_layer_sizes_tie_the_decoder_and_carry_the_state():
    torch.manual_seed(4)
    model = awd().eval()
    assert [layer.hidden_size for layer in model.rnn.layers] == [8, E]
    assert model.decoder.weight is model.embedding.weight
    tokens = torch.randint(V, (B, 2 * T))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :T])
    second, _ = model(tokens[:, T:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(whole, hand_forward_stack(model, tokens), atol=1e-5, rtol=1e-5)


# -- AR and TAR ------------------------------------------------------------------------------
def test_activation_penalty_equals_the_hand_computation():
    raw = torch.tensor([[[1.0, 2.0], [3.0, 5.0], [0.0, 1.0]]])  # (B=1, T=3, H=2)
    dropped = torch.tensor([[[2.0, 0.0], [0.0, 4.0], [0.0, 2.0]]])
    # AR: mean of dropped^2 = (4 + 0 + 0 + 16 + 0 + 4) / 6 = 4
    # TAR: differences (2, 3), (-3, -4): mean of squares = (4 + 9 + 9 + 16) / 4 = 9.5
    assert float(activation_penalty(raw, dropped, 2.0, 0.0)) == pytest.approx(8.0)
    assert float(activation_penalty(raw, dropped, 0.0, 1.0)) == pytest.approx(9.5)
    assert float(activation_penalty(raw, dropped, 2.0, 1.0)) == pytest.approx(17.5)


def test_the_model_reports_ar_and_tar_of_its_last_layer():
    """AR on the outputs after the locked output dropout, TAR on those before it: with the
    dropout on, exchanging the two would change the figure."""
    torch.manual_seed(5)
    model = awd(alpha=2.0, beta=1.0, dropout=0.5).train()
    seen = {}
    model.rnn.register_forward_hook(lambda mod, args, out: seen.update(raw=out[0]))
    model.lock_out.register_forward_hook(lambda mod, args, out: seen.update(dropped=out))
    model(torch.randint(V, (B, T)))
    h, d = seen["raw"], seen["dropped"]
    assert not torch.equal(h, d)
    expect = 2 * d.pow(2).mean() + (h[:, 1:] - h[:, :-1]).pow(2).mean()
    torch.testing.assert_close(model.penalty, expect)


def test_contiguous_views_share_one_buffer_and_pass_gradients():
    """What cuDNN is given under weight drop on a GPU, checked on the CPU."""
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    va, vb = contiguous_views([a * 2, b])
    assert va.untyped_storage().data_ptr() == vb.untyped_storage().data_ptr()
    assert vb.data_ptr() == va.data_ptr() + a.numel() * a.element_size()  # back to back
    torch.testing.assert_close(va, a * 2)
    torch.testing.assert_close(vb, b)
    (va.sum() + 3 * vb.sum()).backward()
    torch.testing.assert_close(a.grad, torch.full_like(a, 2.0))
    torch.testing.assert_close(b.grad, torch.full_like(b, 3.0))


# -- bad options ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dropouth": 1.0}, "model.dropouth=1.0 must be in [0, 1)"),
        ({"wdrop": -0.1}, "model.wdrop=-0.1 must be in [0, 1)"),
        ({"dropoute": 1.5}, "model.dropoute=1.5 must be in [0, 1)"),
        ({"hidden_sizes": [8, 6, 4]}, "model.hidden_sizes=[8, 6, 4] has 3 sizes for "),
        ({"hidden_sizes": [8, 7]}, "model.tie_weights=true needs model.emb_size (6) == "),
        ({"alpha": -1.0}, "model.alpha=-1.0 must be >= 0"),
    ],
)
def test_bad_regulariser_options_get_one_line(kwargs, message):
    with pytest.raises(SeqlmError) as e:
        awd(**kwargs)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_variable_windows_scale_the_learning_rate_by_their_length(tmp_path):
    probe = Iterates()
    overrides = [*SMALL_AGREEMENT, *TINY_TRAIN, "optim=sgd", "data.variable_bptt=true"]
    cfg = make_config("train", [*overrides, "+trainer.limit_val_batches=0"])
    train(cfg, run_dir=tmp_path, callbacks=[probe], evaluate=False)
    lengths = {n for n, _ in probe.lrs}
    assert len(lengths) > 3  # the windows did vary
    for n, lr in probe.lrs:
        # lr x seq_len / bptt (lr 20, bptt 20); a rate not put back would compound
        assert lr == pytest.approx(20.0 * n / 20)
