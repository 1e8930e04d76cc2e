"""``train``: fit a model, test it with its best weights, write the run directory.

Run directory: ``metrics.json``, ``vocab.json``, ``config.yaml`` (resolved),
``history.jsonl`` (one line per validation), ``checkpoints/{best,last}.ckpt``, and the
loggers' files (``wandb/``, ``logs/``, ``tensorboard/``).
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from seqlm.conf import is_group
from seqlm.data import LMData
from seqlm.errors import SeqlmError
from seqlm.lit import LitLM
from seqlm.ngram_plugin import is_ngram, train_ngram
from seqlm.tracking import log_final, make_loggers


def run_dir_of(cfg: DictConfig) -> Path:
    """Hydra's output directory when run through the CLI, else the current directory."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def write_metrics(path: Path | str, metrics: dict[str, Any]) -> None:
    """metrics.json, written atomically (a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def summary_table(metrics: dict[str, Any]) -> str:
    """The headline numbers as an aligned two-column table."""
    rows = []
    for split in ("val", "test"):
        for key in (
            "ppl",
            "pseudo_ppl",
            "ppl_floor",
            "loss",
            "bits",
            "tokens",
            "agreement",
            "agreement_far",
        ):
            k = f"{split}/{key}"
            if k in metrics:
                v = metrics[k]
                rows.append((k, f"{v:.4f}" if isinstance(v, float) else str(v)))
    for k in ("model/params", "time/train_s"):
        if k in metrics:
            rows.append(
                (k, f"{metrics[k]:.1f}" if isinstance(metrics[k], float) else str(metrics[k]))
            )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:>12}" for k, v in rows)


def agreement_lines(metrics: dict[str, Any], split: str = "test") -> str:
    """Agreement accuracy by subject-verb distance, one row per distance."""
    by_d = metrics.get(f"{split}/agreement_by_distance")
    if not by_d:
        return ""
    rows = [f"{'distance':>8}  {'accuracy':>8}  {'events':>6}"]
    for d, (c, t) in sorted(by_d.items()):
        rows.append(f"{d:>8}  {c / t:>8.3f}  {t:>6}")
    return "\n".join(rows)


class History(pl.Callback):
    """``history.jsonl``: one line per validation, with the epoch, step, wall time since the
    start of training and the validation metrics; ``compare`` plots it. Rank 0 writes; a resumed
    run appends, its clock continuing from the last line."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0.0
        self.started = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()
        if self.path.exists() and (lines := self.path.read_text().splitlines()):
            self.offset = json.loads(lines[-1])["time_s"]

    def on_validation_end(self, trainer, pl_module) -> None:
        val = pl_module.results.get("val")
        fitting = trainer.state.fn == "fit"  # not the final validate() with the best weights
        if trainer.sanity_checking or not fitting or not trainer.is_global_zero or not val:
            return
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "time_s": self.offset + time.perf_counter() - self.started,
            **{k: v for k, v in val.items() if isinstance(v, int | float)},
        }
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file, flushed, then renamed over the old one: a kill
    during a save leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)  # after an error; a SIGKILL leaves it, harmless


def checkpoint_callbacks(cfg: DictConfig, run_dir: Path) -> list[ModelCheckpoint]:
    """``best.ckpt`` by ``checkpoint.monitor``; ``last.ckpt`` after every validation and, with
    ``checkpoint.every_n_steps``, every N optimizer steps (what a resume starts from)."""
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=cfg.checkpoint.monitor,
        mode="min",
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    every = cfg.checkpoint.get("every_n_steps") or 0
    if every < 0:
        raise SeqlmError(f"checkpoint.every_n_steps={every} must be 0 (off) or positive")
    if not every:
        return [best]
    steps = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        every_n_train_steps=every,
        save_top_k=0,
        save_last=True,
        enable_version_counter=False,
    )
    return [best, steps]


def peak_memory() -> dict[str, int]:
    """Peak resident memory of this process (and peak GPU memory allocated), in bytes."""
    out = {"memory/peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        out["memory/peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    return out


def train(
    cfg: DictConfig,
    run_dir: Path | None = None,
    callbacks: list | None = None,
    evaluate: bool = True,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; returns the metrics also written to metrics.json.
    ``callbacks`` are added to the trainer's; ``evaluate=False`` skips the final validation
    and test (benchmarks of the training loop); ``ckpt_path`` (a file or ``last``) resumes.
    Under DDP only rank 0 writes the run directory and the loggers' runs."""
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    zero = rank_zero_only.rank == 0
    if zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    container = OmegaConf.to_container(cfg, resolve=True)
    if is_ngram(cfg.model):
        if not zero:  # counting is one process's work
            return {}
        metrics = train_ngram(cfg, run_dir)
        log_final(make_loggers(cfg, run_dir), container, metrics)
        return finish(run_dir, metrics)
    check_launch(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    started = time.perf_counter()

    data: LMData = instantiate(cfg.data, _convert_="all")
    data.prepare()
    lit = LitLM(model=container["model"], optim=container["optim"], vocab_size=len(data.vocab))
    lit.vocab_tokens, lit.run_config = data.vocab.itos, container
    data.layout = lit.net.layout
    if zero:
        data.vocab.save(run_dir / "vocab.json")

    ckpts = checkpoint_callbacks(cfg, run_dir)
    loggers = make_loggers(cfg, run_dir)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[
            *ckpts,
            History(run_dir / "history.jsonl"),
            *(instantiate(c) for c in (cfg.get("callbacks") or {}).values()),
            *(callbacks or []),
        ],
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        # A new loader every epoch is how the stream learns its epoch (set_epoch): AWD window
        # lengths and sentence order are drawn per epoch, and the resume position names it.
        reload_dataloaders_every_n_epochs=1,
    )
    trainer.fit(lit, datamodule=data, ckpt_path=ckpt_path)
    train_s = time.perf_counter() - started
    if not evaluate:
        return {"time/train_s": train_s, "train/steps": trainer.global_step}

    # Validate and test with the best weights; with no validation yet (a short max_steps
    # run), with the weights as they are.
    best = ckpts[0].best_model_path or None
    trainer.validate(lit, datamodule=data, ckpt_path=best, verbose=False, weights_only=True)
    trainer.test(lit, datamodule=data, ckpt_path=best, verbose=False, weights_only=True)

    metrics: dict[str, Any] = {**lit.results["val"], **lit.results["test"], **data.info()}
    metrics.update(
        {
            "model/name": cfg.model._target_.rsplit(".", 1)[-1],
            "model/cell": cfg.model.get("cell", ""),
            "model/layers": cfg.model.get("num_layers", 1),
            "model/hidden_size": cfg.model.get("hidden_size", 0),
            "model/params": sum(p.numel() for p in lit.net.parameters()),
            "time/train_s": train_s,
            "time/total_s": time.perf_counter() - started,
            "train/steps": trainer.global_step,
            "train/epochs": trainer.current_epoch,
            "train/world_size": trainer.world_size,
            # every rank trains as many targets; the time includes validation
            "train/tokens_per_s": lit.tokens_seen * trainer.world_size / train_s,
            "checkpoint": str(best) if best else "",
            **peak_memory(),
        }
    )
    if trainer.is_global_zero:
        log_final(loggers, container, metrics)
    return finish(run_dir, metrics, write=trainer.is_global_zero)


def check_launch(cfg: DictConfig) -> None:
    """Refuse a Hydra multirun that Lightning would have to re-launch for DDP: each worker would
    start the whole sweep again."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    strategy = str(cfg.trainer.get("strategy", ""))
    if (
        HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
        and strategy.startswith("ddp")
        and "LOCAL_RANK" not in os.environ
        and cfg.trainer.get("devices", 1) not in (1, "1")
    ):
        raise SeqlmError(
            f"trainer.strategy={strategy} with -m: run each point of the sweep as its own "
            "command (Lightning re-launches one command per device), or start it with torchrun"
        )


def finish(run_dir: Path, metrics: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """Write metrics.json (config and vocabulary are already there) and print the summary."""
    if write:
        write_metrics(run_dir / "metrics.json", metrics)
        print(summary_table(metrics))
        table = agreement_lines(metrics)
        if table:
            print("agreement by distance (test):\n" + table)
        print(f"run directory: {run_dir}")
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}


def resumed_config(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """``resume=RUN_DIR``: the run's saved config, with the command line's own overrides on top
    (``trainer.max_epochs=20`` trains longer; ``trainer=``/``logger=`` swap a preset). Changing
    the model, data or optimizer of a run is refused."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(cfg.resume)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not (run_dir / "config.yaml").is_file() or not last.is_file():
        raise SeqlmError(f"resume={run_dir}: no config.yaml and checkpoints/last.ckpt there")
    saved = OmegaConf.load(run_dir / "config.yaml")
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in ("resume", "ckpt_path") or key.startswith("hydra"):
            continue
        if is_group(key):
            if key not in ("trainer", "logger"):
                raise SeqlmError(f"resume: {key}= cannot change in a resumed run ({override})")
            saved[key] = cfg[key]
        else:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    saved.resume = str(run_dir)
    return saved, run_dir


def run(cfg: DictConfig) -> dict[str, Any]:
    if cfg.get("resume"):
        cfg, run_dir = resumed_config(cfg)
        return train(cfg, run_dir, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"))
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise SeqlmError(f"ckpt_path={ckpt_path}: no such checkpoint file (or use `last`)")
    return train(cfg, ckpt_path=ckpt_path)
