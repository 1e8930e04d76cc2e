"""How a command reaches every process: Lightning's DDP launcher re-runs
``python -m seqlm.__main__ <overrides>`` for every other device, and a Hydra multirun runs one
job per point of a sweep. The two do not mix when Lightning does the launching."""

from __future__ import annotations

import os

from omegaconf import DictConfig

from seqlm.errors import SeqlmError

COMMAND_ENV = "SEQLM_COMMAND"  # the sub-command, for the workers Lightning starts


def worker_argv(argv: list[str], commands: tuple[str, ...]) -> list[str]:
    """``argv`` with the sub-command put back in front in a DDP worker that Lightning started
    (it keeps ``sys.argv[1:]``, which holds the overrides only); unchanged elsewhere."""
    command = os.environ.get(COMMAND_ENV)
    if "LOCAL_RANK" in os.environ and command in commands and (not argv or argv[0] not in commands):
        return [command, *argv]
    return argv


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
