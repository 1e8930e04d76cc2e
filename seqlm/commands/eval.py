"""``eval ckpt=RUN_DIR|FILE [data=...]``: score a trained model (network, n-gram run, ARPA
file) on its data, or on other data with the same vocabulary, exactly as training's final test
does."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from seqlm.errors import SeqlmError
from seqlm.rundir import summary_table, write_metrics
from seqlm.scorers import load_scorer, on_data


def run(cfg: DictConfig) -> dict[str, Any]:
    bad = set(cfg.splits) - {"valid", "test"}
    if bad:
        raise SeqlmError(f"splits={list(cfg.splits)}: {sorted(bad)} not among valid, test")
    data, scorer = on_data(load_scorer(cfg.ckpt, cfg.get("arpa_unk")), cfg.get("data"))
    metrics = scorer.evaluate(data, tuple(cfg.splits))
    if cfg.get("out"):
        write_metrics(cfg.out, metrics)
    print(summary_table(metrics))
    return metrics
