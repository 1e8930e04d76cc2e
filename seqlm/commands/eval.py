"""``eval ckpt=RUN_DIR|FILE [data=...]``: score a trained run on its data (or other data with
the same vocabulary) exactly as training's final test does."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqlm.commands.train import summary_table, write_metrics
from seqlm.data import LMData
from seqlm.errors import SeqlmError
from seqlm.scoring import Loaded, load_run


def data_for(loaded: Loaded, data_cfg: DictConfig | None) -> LMData:
    """The run's own data config, or the one given; its vocabulary must be the run's."""
    cfg = data_cfg if data_cfg is not None else OmegaConf.create(loaded.config["data"])
    data: LMData = instantiate(cfg, _convert_="all")
    data.prepare()
    if data.vocab != loaded.vocab:
        raise SeqlmError(
            f"ckpt={str(loaded.path)!r} was trained with vocabulary {loaded.vocab.digest()} "
            f"({len(loaded.vocab)} tokens), but data={data.name} builds {data.vocab.digest()} "
            f"({len(data.vocab)} tokens): scores across vocabularies are not comparable"
        )
    data.layout = loaded.lit.net.layout
    return data


def evaluate(loaded: Loaded, data: LMData, splits=("valid", "test")) -> dict[str, Any]:
    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    if "valid" in splits:
        trainer.validate(loaded.lit, datamodule=data, verbose=False)
    if "test" in splits:
        trainer.test(loaded.lit, datamodule=data, verbose=False)
    out: dict[str, Any] = {}
    for stage in ("val", "test"):
        out.update(loaded.lit.results.get(stage, {}))
    return {**out, **data.info()}


def run(cfg: DictConfig) -> dict[str, Any]:
    loaded = load_run(cfg.ckpt)
    bad = set(cfg.splits) - {"valid", "test"}
    if bad:
        raise SeqlmError(f"splits={list(cfg.splits)}: {sorted(bad)} not among valid, test")
    metrics = evaluate(loaded, data_for(loaded, cfg.get("data")), tuple(cfg.splits))
    if cfg.get("out"):
        write_metrics(cfg.out, metrics)
    print(summary_table(metrics))
    return metrics
