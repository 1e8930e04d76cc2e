"""The run directory: what a run leaves behind, written here and only here.

``config.yaml`` (resolved), ``vocab.json``, ``metrics.json`` (``seqlm.schema``; written
atomically, ``null`` for a non-finite figure), ``history.jsonl`` (one line per validation),
``checkpoints/`` (``seqlm.checkpointing``), and the loggers' files (``wandb/``, ``logs/``,
``tensorboard/``). Under DDP only rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seqlm.files import write_text
from seqlm.schema import finite, summary_rows


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


def summary_table(metrics: dict[str, Any]) -> str:
    """The headline numbers as an aligned two-column table."""
    rows = []
    for k, v in summary_rows(metrics):
        if isinstance(v, float):
            v = f"{v:.1f}" if k.startswith(("time/", "model/")) else f"{v:.4f}"
        rows.append((k, "-" if v is None else str(v)))
    width = max((len(k) for k, _ in rows), default=0)
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
