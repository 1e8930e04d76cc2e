"""``train``: fit a model, test it with its best weights, write the run directory.

Run directory: ``metrics.json``, ``vocab.json``, ``config.yaml`` (resolved),
``checkpoints/{best,last}.ckpt``, and the loggers' files.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from seqlm.data import LMData
from seqlm.lit import LitLM
from seqlm.ngram_plugin import is_ngram, train_ngram


def run_dir_of(cfg: DictConfig) -> Path:
    """Hydra's output directory when run through the CLI, else the current directory."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def make_loggers(cfg: DictConfig, run_dir: Path) -> list:
    return [instantiate(c, save_dir=str(run_dir)) for c in (cfg.get("logger") or {}).values()]


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, written atomically (a crash never leaves half a file)."""
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


def train(
    cfg: DictConfig,
    run_dir: Path | None = None,
    callbacks: list | None = None,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; returns the metrics also written to metrics.json.
    ``callbacks`` are added to the trainer's; ``evaluate=False`` skips the final validation
    and test (benchmarks of the training loop)."""
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if is_ngram(cfg.model):
        metrics = train_ngram(cfg, run_dir)
        for logger in make_loggers(cfg, run_dir):  # the same keys to the same loggers
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
            logger.log_metrics(
                {
                    k: float(v)
                    for k, v in metrics.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
            )
            logger.finalize("success")
        return finish(run_dir, metrics)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    started = time.perf_counter()

    data: LMData = instantiate(cfg.data, _convert_="all")
    data.prepare()
    container = OmegaConf.to_container(cfg, resolve=True)
    lit = LitLM(model=container["model"], optim=container["optim"], vocab_size=len(data.vocab))
    lit.vocab_tokens, lit.run_config = data.vocab.itos, container
    data.layout = lit.net.layout

    data.vocab.save(run_dir / "vocab.json")

    ckpt = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=cfg.checkpoint.monitor,
        mode="min",
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[ckpt, *(callbacks or [])],
        logger=make_loggers(cfg, run_dir) or False,
        default_root_dir=str(run_dir),
    )
    trainer.fit(lit, datamodule=data)
    train_s = time.perf_counter() - started
    if not evaluate:
        return {"time/train_s": train_s, "train/steps": trainer.global_step}

    # Validate and test with the best weights; with no validation yet (a short max_steps
    # run), with the weights as they are.
    best = ckpt.best_model_path or None
    trainer.validate(lit, datamodule=data, ckpt_path=best, verbose=False, weights_only=True)
    trainer.test(lit, datamodule=data, ckpt_path=best, verbose=False, weights_only=True)

    metrics: dict[str, Any] = {**lit.results["val"], **lit.results["test"], **data.info()}
    metrics.update(
        {
            "model/name": cfg.model._target_.rsplit(".", 1)[-1],
            "model/cell": cfg.model.get("cell", ""),
            "model/params": sum(p.numel() for p in lit.net.parameters()),
            "time/train_s": train_s,
            "time/total_s": time.perf_counter() - started,
            "train/steps": trainer.global_step,
            "train/epochs": trainer.current_epoch,
            "checkpoint": str(best) if best else "",
        }
    )
    if torch.cuda.is_available():
        metrics["memory/peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    return finish(run_dir, metrics, write=trainer.is_global_zero)


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


def run(cfg: DictConfig) -> dict[str, Any]:
    return train(cfg)
