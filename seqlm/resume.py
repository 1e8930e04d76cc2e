"""``train resume=RUN_DIR``: continue a run in its own folder from ``checkpoints/last.ckpt``.

What a checkpoint holds for an exact continuation (optimizer, scheduler, loop counters, the
stream position, every rank's carried state, the RNG) is written by ``LitLM`` and Lightning;
this module only rebuilds the run's config.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seqlm.conf import is_group
from seqlm.errors import SeqlmError

SWAPPABLE = ("trainer", "logger", "callbacks")  # model, data and optim of a run may not change


def resumed_config(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """The run's saved config, with the command line's own overrides on top
    (``trainer.max_epochs=20`` trains longer; ``trainer=``/``logger=`` swap a preset)."""
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
            if key not in SWAPPABLE:
                raise SeqlmError(f"resume: {key}= cannot change in a resumed run ({override})")
            saved[key] = cfg[key]
        else:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    saved.resume = str(run_dir)
    return saved, run_dir


def last_checkpoint(run_dir: Path) -> str:
    return str(run_dir / "checkpoints" / "last.ckpt")
