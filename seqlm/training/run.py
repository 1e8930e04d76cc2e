"""A network's training run: Lightning's fit, the failures it can end in (divergence,
interruption, a lost DDP peer), and the final evaluation in float32 with the best weights.
``seqlm.commands.train`` dispatches here; n-gram runs never import this module (nor torch)."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from seqlm.build import check_node
from seqlm.data import prepared_data
from seqlm.errors import Diverged, SeqlmError
from seqlm.evaluation.schema import EVAL_PRECISION, network_description, run_metrics
from seqlm.models import layout_of
from seqlm.runs.rundir import finish, write_metrics
from seqlm.runs.tracking import log_final
from seqlm.training.checkpointing import best_or_last, init_weights
from seqlm.training.interrupt import Stop, rank_stopped
from seqlm.training.launch import check_launch
from seqlm.training.module import LitLM
from seqlm.training.quiet import silence_known_notices
from seqlm.training.trainer import make_trainer, peak_memory


def train_network(
    cfg: DictConfig,
    run_dir: Path,
    callbacks: list | None = None,
    evaluate: bool = True,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """``seqlm.commands.train.train`` for a network (its config already written)."""
    silence_known_notices()
    zero = rank_zero_only.rank == 0
    cfg = checked_network_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    started = time.perf_counter()
    container = OmegaConf.to_container(cfg, resolve=True)
    data = prepared_data(cfg.data, layout_of(cfg.model), run_dir if zero else None)
    lit = LitLM(container["model"], container["optim"], data.vocab.itos, container)
    if cfg.get("init_from"):
        init_weights(lit, cfg.init_from, data.vocab.itos)
    stop = Stop(run_dir / "checkpoints" / "last.ckpt")
    trainer, best, loggers = make_trainer(cfg, run_dir, [*(callbacks or []), stop])
    plateau = "ReduceLROnPlateau" in str((cfg.optim.get("scheduler") or {}).get("_target_", ""))
    if plateau and cfg.trainer.get("limit_val_batches") == 0 and zero:
        print("no validation (limit_val_batches=0): the learning rate stays where it starts")
    with failures_reported(trainer, stop, run_dir, loggers, container, started):
        trainer.fit(lit, datamodule=data, ckpt_path=ckpt_path)
    train_s = time.perf_counter() - started
    if not evaluate:
        return {"time/train_s": train_s, "train/steps": trainer.global_step}
    ckpt = best_or_last(best)  # the best weights by validation, else the last saved
    if not best.best_model_path and trainer.is_global_zero:
        print(f"no validation ran, so no best checkpoint: testing {ckpt or 'the final weights'}")
    train_precision = str(trainer.precision)
    evaluation = final_evaluation(trainer, lit, data, ckpt)
    facts = {
        "time/train_s": train_s,
        "time/total_s": time.perf_counter() - started,
        "train/steps": trainer.global_step,
        "train/epochs": trainer.current_epoch,
        "train/world_size": trainer.world_size,
        "train/precision": train_precision,
        "eval/precision": EVAL_PRECISION,
        # every rank trains as many targets; the time includes validation
        "train/tokens_per_s": lit.tokens_seen * trainer.world_size / train_s,
        "checkpoint": ckpt or "",
        **peak_memory(),
        **({"smoke": True} if cfg.get("smoke") else {}),
    }
    metrics = run_metrics(network_description(container["model"], lit.net), evaluation, facts)
    if trainer.is_global_zero:
        log_final(loggers, container, metrics)
    return finish(run_dir, metrics, write=trainer.is_global_zero)


def checked_network_config(cfg: DictConfig) -> DictConfig:
    """What can be refused of a network's config before the data is read (the launch, the
    output layer but for the bound the vocabulary size sets, the recurrent layers); with
    ``smoke=true``, the config of a smoke trial."""
    check_launch(cfg)
    check_node("model", cfg.model)
    return smoke_trial(cfg) if cfg.get("smoke") else cfg


@contextlib.contextmanager
def failures_reported(trainer, stop: Stop, run_dir: Path, loggers, container, started: float):
    """``trainer.fit`` ending early, said once: a divergence (metrics.json says where; the
    checkpoints written so far are finite and stay), an interruption (Ctrl-C or SIGTERM:
    stopped after a step, last.ckpt written, exit code 130 or 143), a DDP peer lost (this
    rank's collective failed rather than hung)."""
    try:
        yield
    except Diverged as e:
        if trainer.is_global_zero:
            write_metrics(run_dir / "metrics.json", e.metrics())
            log_final(loggers, container, e.metrics(), failed=True)
        raise
    except SIGTERMException:
        stopped = {
            "status": "interrupted",
            "interrupted/signal": signal.Signals(stop.signum).name,
            "train/steps": trainer.global_step,
            "time/train_s": time.perf_counter() - started,
            "checkpoint": str(stop.last),
        }
        if trainer.is_global_zero:
            write_metrics(run_dir / "metrics.json", stopped)
            log_final(loggers, container, stopped, failed=True)
            print(f"interrupted at step {trainer.global_step}: resume={run_dir} continues")
        raise SystemExit(stop.exit_code) from None
    except RuntimeError as e:
        if trainer.world_size < 2 or not peer_lost(e):
            raise
        rank = trainer.global_rank
        others = [r for r in range(trainer.world_size) if r != rank]
        who = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {others}"
        how = f"rank {rank} lost its connection to it"
        raise SeqlmError(rank_stopped(who, trainer, how, run_dir)) from None


def final_evaluation(trainer, lit: LitLM, data, ckpt: str | None) -> dict[str, Any]:
    """Validation and test of the weights in ``ckpt`` (the final ones if None), with the
    data's facts; no ``val/*`` figure when nothing was validated. In float32 whatever the
    training precision (``trainer.precision=bf16-mixed`` trains in bfloat16 autocast), so that
    metrics.json and ``seqlm eval`` of the same checkpoint give the same figures; the training
    precision is recorded beside them (``train/precision``)."""
    trainer.strategy.precision_plugin = Precision()  # no autocast, no loss scaling
    lit.float()  # a ``*-true`` half precision trained half weights; mixed ones are float32
    for stage in (trainer.validate, trainer.test):
        stage(lit, datamodule=data, ckpt_path=ckpt, verbose=False, weights_only=True)
    evaluation = {**lit.results.get("val", {}), **lit.results["test"], **data.info()}
    if "val/loss" not in evaluation:
        evaluation = {k: v for k, v in evaluation.items() if not k.startswith("val/")}
    return evaluation


SMOKE_STEPS, SMOKE_BATCHES = 20, 10


def smoke_trial(cfg: DictConfig) -> DictConfig:
    """``smoke=true``: the same preset for 20 steps (fewer if asked), validated once at the
    end, with 10 batches of validation and of test: a check that a configuration runs, in a
    minute, whose figures are marked and are no results."""
    cfg = cfg.copy()
    with open_dict(cfg):
        steps = cfg.trainer.get("max_steps", -1)
        steps = SMOKE_STEPS if steps is None or steps < 0 else min(steps, SMOKE_STEPS)
        cfg.trainer.max_steps = steps
        cfg.trainer.val_check_interval = steps
        cfg.trainer.check_val_every_n_epoch = None
        for key in ("limit_val_batches", "limit_test_batches"):
            cfg.trainer[key] = SMOKE_BATCHES
    print(
        f"smoke trial: {steps} steps, then {SMOKE_BATCHES} batches of validation and of test "
        "(the figures are marked smoke: they are not results)"
    )
    return cfg


PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def peer_lost(e: RuntimeError) -> bool:
    """Whether ``e`` is a collective that failed because another process of the run is gone
    (gloo's words for it; under NCCL, ``RankWatch`` is what notices)."""
    return any(words in str(e) for words in PEER_LOST)
