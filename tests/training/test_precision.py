"""The GPU paths as far as a CPU can prove them: the divergence guard under a loss scaler and
under DDP, the dtype the recurrent layers run in under each autocast precision, the fused
training loss, the final figures in float32, every scorer path on weights of another dtype (a
stand-in for another device), resume with more or fewer GPUs than were saved, and the
backend settings refused in one line. The same checks on a GPU are in tests/test_gpu.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from seqlm.commands import eval as eval_cmd
from seqlm.commands import generate, mix
from seqlm.commands.train import train
from seqlm.compat import loss_scale
from seqlm.errors import Diverged, SeqlmError
from seqlm.models import RecurrentLM
from seqlm.models.recurrent import cpu_bf16_lstm
from seqlm.scorers import load_scorer
from seqlm.training.divergence import MAX_SKIPPED, DivergenceGuard
from seqlm.training.resume import set_rng_states
from seqlm.training.trainer import set_matmul_precision

V = 50


# -- the guard under a loss scaler ----------------------------------------------------------------
def _scaled_steps(overflow_at: set[int], steps: int):
    """A tiny model trained by hand in the order Lightning's AMP plugin takes: scale, backward,
    unscale, the guard, scaler.step, update. The gradients overflow at ``overflow_at``."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, V)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    guard = DivergenceGuard(V)
    applied, weights = [], []
    x, y = torch.randn(8, 4), torch.randint(0, V, (8,))
    for step in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        guard.loss = loss.detach()
        scaler.scale(loss).backward()
        if step in overflow_at:
            model.weight.grad.fill_(float("inf"))
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        applied.append(guard.check(norm, step, 0.1, scaler._get_scale_async()))
        before = model.weight.detach().clone()
        scaler.step(opt)
        scaler.update()
        weights.append(not torch.equal(before, model.weight.detach()))
    return applied, weights, scaler


def test_an_overflow_the_scaler_skips_is_not_a_divergence():
    applied, moved, scaler = _scaled_steps({3, 7, 8}, 12)
    skipped = {3, 7, 8}
    assert [not a for a in applied] == [s in skipped for s in range(12)]
    assert moved == [s not in skipped for s in range(12)]  # the scaler skipped exactly those
    assert scaler.get_scale() == 2.0**16 / 8  # halved once per skipped step


def test_a_run_of_overflows_stops_with_its_reason():
    with pytest.raises(Diverged, match=f"{MAX_SKIPPED + 1} steps in a row overflowed float16"):
        _scaled_steps(set(range(5, 100)), 100)


def test_a_collapsed_scale_stops_with_its_reason():
    guard = DivergenceGuard(V)
    guard.loss = torch.tensor(3.0)
    inf = torch.tensor(float("inf"))
    with pytest.raises(Diverged, match="the loss scale collapsed"):
        guard.check(inf, 9, 0.1, torch.tensor(2.0**-20))


def test_a_non_finite_loss_stops_even_under_a_scaler():
    guard = DivergenceGuard(V)
    guard.loss = torch.tensor(float("nan"))
    with pytest.raises(Diverged, match="the loss is not finite"):
        guard.check(torch.tensor(1.0), 4, 0.1, torch.tensor(2.0**16))


def test_without_a_scaler_a_non_finite_norm_is_divergence():
    guard = DivergenceGuard(V)
    guard.loss = torch.tensor(3.0)
    with pytest.raises(Diverged, match="the gradient norm is not finite"):
        guard.check(torch.tensor(float("nan")), 4, 0.1)


def test_every_rank_reaches_the_verdict_of_the_worst():
    # this rank's loss is fine; another rank's is not finite: the all-reduce (max) of what
    # each rank found makes this one stop too, with the same reason
    other = torch.tensor([1.0, 0.0, 0.0])  # the other rank: loss not finite

    def reduce(found: torch.Tensor) -> torch.Tensor:
        return torch.maximum(found, other)

    guard = DivergenceGuard(V)
    guard.loss = torch.tensor(3.0)
    with pytest.raises(Diverged, match="the loss is not finite on one of the ranks"):
        guard.check(torch.tensor(1.0), 4, 0.1, None, reduce)
    guard.loss = torch.tensor(3.0)
    assert guard.check(torch.tensor(1.0), 5, 0.1, None, lambda t: t)  # nobody found anything


def test_the_loss_scale_is_read_from_the_trainers_scaler():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler))
    assert float(loss_scale(trainer)) == 1024.0
    assert loss_scale(SimpleNamespace(precision_plugin=SimpleNamespace())) is None


# -- the dtype the recurrent layers run in --------------------------------------------------------
CELLS = ["rnn", "gru", "lstm", "mogrifier", "mingru", "minlstm"]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _net(cell: str, **extra) -> RecurrentLM:
    cfg = make_config("train", [f"model={cell}"]).model
    options = {k: v for k, v in cfg.items() if k != "_target_"}
    options.update(emb_size=16, hidden_size=16, num_layers=1, **extra)
    return RecurrentLM(V, **options)


def ran_in(net: RecurrentLM, device: str, dtype: torch.dtype | None) -> torch.dtype:
    """The dtype of the recurrent layers' output in one forward pass under autocast."""
    seen = []
    hook = net.rnn.register_forward_hook(lambda m, i, out: seen.append(out[0].dtype))
    tokens = torch.randint(0, V, (2, 5), device=device)
    with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        net.to(device).features(tokens)
    hook.remove()
    return seen[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", CELLS)
def test_under_bf16_autocast_the_recurrence_is_never_float16(cell, device):
    net = _net(cell)
    assert ran_in(net, device, None) == torch.float32
    bf16 = ran_in(net, device, torch.bfloat16)
    assert bf16 in (torch.bfloat16, torch.float32)  # never float16 without a scaler
    if isinstance(net.rnn, torch.nn.RNNBase) and device == "cuda":
        assert bf16 == torch.float32  # cuDNN's autocast would have cast it to float16
    if cell == "lstm" and device == "cpu":
        assert bf16 == (torch.bfloat16 if cpu_bf16_lstm() else torch.float32)
    if device == "cuda":  # float16 is for 16-mixed, which scales the loss
        assert ran_in(net, device, torch.float16) in (torch.float16, torch.float32)


# -- the fused training loss ----------------------------------------------------------------------
def test_the_fused_loss_equals_the_exact_path_and_its_gradient():
    torch.manual_seed(1)
    net = _net("lstm").train()
    tokens = torch.randint(0, V, (3, 7))
    target = torch.randint(0, V, (3, 7))
    target[2, 4:] = -100  # padding
    hidden, _ = net.features(tokens)
    fused = net.target_log_probs(hidden, target)
    exact = net.target_log_probs(hidden, target, torch.float64)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused.double(), exact, rtol=0, atol=1e-6)
    assert (fused[2, 4:] == 0).all()
    (g_fused,) = torch.autograd.grad(fused.sum(), hidden, retain_graph=True)
    (g_exact,) = torch.autograd.grad(exact.sum(), hidden)
    torch.testing.assert_close(g_fused.double(), g_exact.double(), rtol=0, atol=1e-6)


# -- final figures in float32 ---------------------------------------------------------------------
def test_a_bf16_run_tests_in_float32_as_eval_does_and_records_both(tmp_path):
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN, "trainer.precision=bf16-mixed"])
    metrics = train(cfg, run_dir=tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["train/precision"] == "bf16-mixed" and on_disk["eval/precision"] == "32-true"
    again = eval_cmd.run(make_config("eval", [f"ckpt={tmp_path}"]))
    assert again["eval/precision"] == "32-true"
    assert again["test/ppl"] == pytest.approx(metrics["test/ppl"], rel=1e-9)
    assert again["val/ppl"] == pytest.approx(metrics["val/ppl"], rel=1e-9)


# -- every scorer path on weights of another dtype ------------------------------------------------
class Float32Made(TorchDispatchMode):
    """Records every operation that makes a float32 tensor."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(
            isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in tree_flatten(out)[0]
        ):
            self.ops.append(str(func))
        return out


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lstm")
    train(make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN]), run_dir=out)
    return out


def _paths(scorer) -> dict:
    """Every scorer path, as the commands call them (score, rescore, eval tokens_out, the
    cache and dynamic evaluation, fill, generate, the step API); each returns numbers."""
    from seqlm.evaluation.test_time import Cache, Dynamic

    lines = [scorer.vocab.encode(s.split()) for s in ("the dogs near the car run", "the dog")]
    ids = np.asarray([i for line in lines for i in [*line, 1]] * 6)

    def stepped():
        lm = scorer.stepper()
        return [lm.sentence_log_prob(line) for line in lines]

    return {
        "score": lambda: np.concatenate(scorer.line_token_logprobs(lines)),
        "rescore": lambda: scorer.sentence_logprobs(lines),
        "tokens_out": lambda: scorer.token_logprobs(ids, 3),
        "cache and dynamic evaluation": lambda: scorer.adapted_logprobs(
            ids, 2, 16, Cache(50, 0.3, 0.1), Dynamic(0.1, "rms")
        ),
        "fill": lambda: scorer.blank_logprobs(lines[0][:2], lines[0][3:]),
        "generate": lambda: generate.sample(
            scorer.stepper(), lines[1], 6, 0.9, 5, torch.Generator().manual_seed(0)
        ),
        "step API": stepped,
    }


def test_every_scorer_path_keeps_the_weights_dtype_and_its_figures(lstm_run):
    single = {
        name: np.asarray(f(), np.float64) for name, f in _paths(load_scorer(lstm_run)).items()
    }
    scorer = load_scorer(lstm_run)
    scorer.lit.double()
    for name, f in _paths(scorer).items():
        mode = Float32Made()
        with mode:
            double = np.asarray(f(), dtype=np.float64)
        assert mode.ops == [], f"{name}: float32 tensors made by {sorted(set(mode.ops))}"
        if name == "generate":
            assert (double == single[name]).all()  # the same samples
        else:
            np.testing.assert_allclose(double, single[name], rtol=0, atol=1e-5, err_msg=name)


def test_eval_and_mix_of_a_float64_network_give_the_float32_figures(
    lstm_run, tmp_path, monkeypatch
):
    import seqlm.scorers.network as network

    runs = f"runs=[{lstm_run},{lstm_run}]"
    plain = eval_cmd.run(make_config("eval", [f"ckpt={lstm_run}"]))
    mixed = mix.run(make_config("mix", [runs, "logger=none"]), tmp_path / "m")
    real = network.network_scorer
    monkeypatch.setattr(network, "network_scorer", lambda lit, path: real(lit.double(), path))
    again = eval_cmd.run(make_config("eval", [f"ckpt={lstm_run}"]))
    mixed64 = mix.run(make_config("mix", [runs, "logger=none"]), tmp_path / "n")
    assert again["test/ppl"] == pytest.approx(plain["test/ppl"], rel=1e-6)
    assert mixed64["test/ppl"] == pytest.approx(mixed["test/ppl"], rel=1e-6)


def test_a_device_that_is_not_here_is_refused_in_one_line(lstm_run):
    with pytest.raises(SeqlmError, match="device=cuda:7: this machine has no such GPU"):
        load_scorer(lstm_run, device="cuda:7")
    with pytest.raises(SeqlmError, match="device='tpu0' is not a device"):
        load_scorer(lstm_run, device="tpu0")


# -- resume with more or fewer GPUs ---------------------------------------------------------------
class FakeCuda:
    """``torch.cuda`` with ``count`` GPUs, recording the states set on each."""

    def __init__(self, count: int):
        self.count, self.set = count, {}

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count

    def set_rng_state(self, state, device="cuda") -> None:
        if device not in ("cuda", *range(self.count)):
            raise RuntimeError(f"invalid device {device}")
        self.set[device] = state


def _saved(**cuda) -> dict:
    from seqlm.training.resume import rng_states

    return {**rng_states(), **cuda}


@pytest.mark.parametrize("visible", [1, 2, 4])
def test_resume_restores_gpu_rng_states_whatever_the_gpus_visible(visible):
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(2)]
    # a checkpoint from before: every visible GPU's state, two of them
    cuda = FakeCuda(visible)
    set_rng_states(_saved(cuda=states), cuda)
    assert sorted(cuda.set) == list(range(min(2, visible)))
    # now: each rank's own device only
    cuda = FakeCuda(visible)
    set_rng_states(_saved(cuda_device=states[1]), cuda)
    assert list(cuda.set) == ["cuda"] and torch.equal(cuda.set["cuda"], states[1])
    # no GPU now: the CPU states only
    cuda = FakeCuda(0)
    set_rng_states(_saved(cuda=states, cuda_device=states[0]), cuda)
    assert cuda.set == {}


# -- backend settings -----------------------------------------------------------------------------
def test_matmul_precision_is_checked():
    set_matmul_precision("high")  # a no-op without a GPU
    with pytest.raises(SeqlmError, match="trainer.matmul_precision='fast' is not one of"):
        set_matmul_precision("fast")


def test_the_training_default_is_documented_high():
    assert make_config("train").trainer.matmul_precision == "high"
