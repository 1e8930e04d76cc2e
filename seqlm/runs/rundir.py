"""The run directory: what a run leaves behind, written here and only here.

``config.yaml`` (resolved), ``vocab.json``, ``metrics.json`` (``seqlm.evaluation.schema``; written
atomically, ``null`` for a non-finite figure), ``history.jsonl`` (one line per validation),
``checkpoints/`` (``seqlm.training.checkpointing``), and the loggers' files (``wandb/``, ``logs/``,
``tensorboard/``). Under DDP only rank 0 writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seqlm.evaluation.schema import agreement_lines, finite, summary_table
from seqlm.files import write_text


def run_dir_of(cfg: DictConfig) -> Path:
    """Hydra's output directory when run through the CLI, else the current directory."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def write_metrics(path: Path | str, metrics: dict[str, Any]) -> None:
    """A metrics file, written atomically (a crash never leaves half a file). JSON has no NaN:
    a non-finite figure is written as ``null``."""
    text = json.dumps(finite(metrics), indent=2, sort_keys=True, default=str, allow_nan=False)
    write_text(path, text + "\n")


def finish(run_dir: Path, metrics: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """Write metrics.json (config and vocabulary are already there) and print the summary.
    Returns the metrics as written: non-finite figures are ``None``."""
    metrics = finite(metrics)
    if write:
        write_metrics(run_dir / "metrics.json", metrics)
        print(summary_table(metrics))
        table = agreement_lines(metrics)
        if table:
            print("agreement by distance (test):\n" + table)
        print(f"run directory: {run_dir}")
    return metrics


LEFT_BY_A_FAILED_RUN = {"__main__.log", ".hydra", "config.yaml", "vocab.json"}


def new_run_dir() -> Path | None:
    """Hydra's output directory if it was made for this command (nothing in it but what Hydra
    just wrote, and not the current directory), else None."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if run_dir.resolve() == Path.cwd().resolve() or not run_dir.is_dir():
        return None
    return run_dir if {p.name for p in run_dir.iterdir()} <= {"__main__.log", ".hydra"} else None


def discard(run_dir: Path) -> None:
    """Remove the directory of a command that failed before it produced anything: only what
    such a run writes, and only if nothing else is there."""
    entries = list(run_dir.iterdir())
    if any(p.name not in LEFT_BY_A_FAILED_RUN for p in entries):
        return
    for p in entries:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    run_dir.rmdir()


def run_name(model: str | None, experiment: str | None = None) -> str:
    """``outputs/DATE/TIME_NAME``: the experiment's name (``experiment=awd_lstm_ptb``), else the
    model's (``lstm``)."""
    return str(experiment if experiment not in (None, "null", "") else model)
