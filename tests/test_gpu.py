"""What only a GPU can show (``-m gpu``; skipped without CUDA, run by benchmarks/gpu_check.sh):
fp16 training past the loss scaler's first growth, gradients through time and dynamic
evaluation on cuDNN against the CPU, every scorer path with ``device=cuda`` against the CPU,
DDP on two GPUs from the console script and torchrun, and resume from a checkpoint that saved
more GPUs' RNG states than are visible. The dtype each cell runs in under bf16 and fp16 is
tests/training/test_precision.py's, which takes every device the machine has."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import SMALL_AGREEMENT, make_config
from launchers import LAUNCHERS

from seqlm.commands import eval as eval_cmd
from seqlm.commands.train import train
from seqlm.evaluation.test_time import Cache, Dynamic
from seqlm.scorers import load_scorer

pytestmark = pytest.mark.gpu

CELLS = ["rnn", "gru", "lstm", "mogrifier", "mingru", "minlstm"]
GPU_TRAIN = [
    *SMALL_AGREEMENT,
    "trainer=gpu",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "model.emb_size=32",
    "model.hidden_size=32",
]


class _Scale(pl.Callback):
    """The loss scale after every step, and the steps it skipped."""

    def __init__(self):
        self.scales: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.scales.append(trainer.precision_plugin.scaler.get_scale())


@pytest.mark.parametrize("cell", CELLS)
def test_fp16_trains_2500_steps_past_the_scalers_first_growth(cell, tmp_path):
    probe = _Scale()
    cfg = make_config(
        "train",
        [
            *GPU_TRAIN,
            f"model={cell}",
            "trainer.precision=16-mixed",
            "trainer.max_steps=2500",
            "trainer.max_epochs=-1",
            "trainer.val_check_interval=500",
        ],
    )
    metrics = train(cfg, run_dir=tmp_path, callbacks=[probe])
    assert metrics["train/steps"] == 2500 and metrics["train/precision"] == "16-mixed"
    assert np.isfinite(metrics["test/ppl"])
    grew = [b > a for a, b in zip(probe.scales, probe.scales[1:])]
    assert any(grew), "the scaler never grew its scale (2,000 clean steps)"


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_lstm")
    train(make_config("train", [*GPU_TRAIN, "model=lstm", "trainer.max_epochs=1"]), run_dir=out)
    return out


def test_gradients_through_time_and_dynamic_evaluation_on_cudnn_equal_the_cpu(gpu_run):
    cpu, gpu = load_scorer(gpu_run, device="cpu"), load_scorer(gpu_run, device="cuda")
    ids = np.asarray(cpu.vocab.encode(["the", "dogs", "near", "the", "car", "run", "<eos>"] * 20))
    np.testing.assert_allclose(
        gpu.gradient_norms(ids, 20, 4), cpu.gradient_norms(ids, 20, 4), rtol=1e-4, atol=1e-6
    )
    dyn = Dynamic(0.1, "sgd")
    np.testing.assert_allclose(
        gpu.adapted_logprobs(ids, 2, 16, None, dyn),
        cpu.adapted_logprobs(ids, 2, 16, None, dyn),
        rtol=0,
        atol=1e-4,
    )


def test_every_scorer_path_on_cuda_equals_the_cpu(gpu_run):
    cpu, gpu = load_scorer(gpu_run, device="cpu"), load_scorer(gpu_run, device="cuda")
    assert gpu.device.type == "cuda"
    lines = [cpu.vocab.encode(s.split()) for s in ("the dogs near the car run", "the dog")]
    ids = np.asarray([i for line in lines for i in [*line, 1]] * 10)
    for name, f in {
        "score/rescore": lambda s: s.sentence_logprobs(lines),
        "tokens_out": lambda s: s.token_logprobs(ids, 3),
        "cache": lambda s: s.adapted_logprobs(ids, 2, 16, Cache(50, 0.3, 0.1), None),
        "step API": lambda s: [s.stepper().sentence_log_prob(line) for line in lines],
    }.items():
        np.testing.assert_allclose(f(gpu), f(cpu), rtol=0, atol=1e-5, err_msg=name)
    on_gpu = eval_cmd.run(make_config("eval", [f"ckpt={gpu_run}", "device=cuda"]))
    on_cpu = eval_cmd.run(make_config("eval", [f"ckpt={gpu_run}", "device=cpu"]))
    assert on_gpu["test/ppl"] == pytest.approx(on_cpu["test/ppl"], rel=1e-5)


def test_resume_from_a_checkpoint_that_saved_more_gpus_than_are_visible(tmp_path):
    args = [*GPU_TRAIN, "model=gru", "trainer.max_epochs=1", "checkpoint.every_n_steps=5"]
    train(make_config("train", args), run_dir=tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    resume = ckpt["seqlm"]["resume"]
    rng = resume.pop("rng_ranks")[0]  # the older format: rank 0's states, every GPU's
    rng["cuda"] = [rng.pop("cuda_device")] * (torch.cuda.device_count() + 3)
    resume["rng"] = rng
    torch.save(ckpt, last)
    more = make_config("train", [*args, "trainer.max_epochs=2"])
    metrics = train(more, run_dir=tmp_path, ckpt_path=str(last))
    assert metrics["train/epochs"] >= 1


TINY_DDP = [
    "train",
    "trainer=ddp",
    "trainer.devices=2",
    "data.sizes=[6000,1200,1200]",
    "model.hidden_size=32",
    "model.emb_size=32",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("launcher", ["console script", "torchrun"])
def test_ddp_on_two_gpus_equals_one_process(launcher, tmp_path):
    argv = LAUNCHERS[launcher]
    r = subprocess.run(
        [*argv, *TINY_DDP, "hydra.run.dir=run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    single = eval_cmd.run(make_config("eval", [f"ckpt={tmp_path / 'run'}", "device=cuda"]))
    assert m["train/world_size"] == 2
    assert single["test/ppl"] == pytest.approx(m["test/ppl"], rel=1e-5)
