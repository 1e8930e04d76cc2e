"""``eval ckpt=RUN_DIR|FILE [data=...]``: score a trained run on its data (or other data with
the same vocabulary) exactly as training's final test does."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqlm.commands.train import summary_table, write_metrics
from seqlm.data import LMData
from seqlm.errors import SeqlmError
from seqlm.ngram_plugin import NgramRun
from seqlm.scoring import load_run


def data_for(loaded, data_cfg: DictConfig | None, arpa_unk: str | None = None):
    """(data, run): the run's own data config, or the one given; its vocabulary must be the
    run's (a foreign ARPA file's words are mapped by spelling instead)."""
    if data_cfg is None and "data" not in loaded.config:
        raise SeqlmError(f"ckpt={str(loaded.path)!r} carries no data config; give data=NAME")
    cfg = data_cfg if data_cfg is not None else OmegaConf.create(loaded.config["data"])
    data: LMData = instantiate(cfg, _convert_="all")
    data.prepare()
    if isinstance(loaded, NgramRun) and ".arpa" in loaded.path.name:
        # a foreign ARPA file: its words are looked up by spelling in the data's vocabulary
        return data, NgramRun(loaded.model, data.vocab, loaded.config, loaded.path, arpa_unk)
    if data.vocab != loaded.vocab:
        raise SeqlmError(
            f"ckpt={str(loaded.path)!r} was trained with vocabulary {loaded.vocab.digest()} "
            f"({len(loaded.vocab)} tokens), but data={data.name} builds {data.vocab.digest()} "
            f"({len(data.vocab)} tokens): scores across vocabularies are not comparable"
        )
    return data, loaded


def run(cfg: DictConfig) -> dict[str, Any]:
    loaded = load_run(cfg.ckpt)
    bad = set(cfg.splits) - {"valid", "test"}
    if bad:
        raise SeqlmError(f"splits={list(cfg.splits)}: {sorted(bad)} not among valid, test")
    data, run = data_for(loaded, cfg.get("data"), cfg.get("arpa_unk"))
    metrics = run.evaluate(data, tuple(cfg.splits))
    if cfg.get("out"):
        write_metrics(cfg.out, metrics)
    print(summary_table(metrics))
    return metrics
