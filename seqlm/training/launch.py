"""How a command reaches every process. Three launchers start DDP's processes:

- Lightning itself (``seqlm train trainer=ddp``, from the console script or ``python -m
  seqlm``): it re-runs the program for every other device with the overrides and rank 0's
  ``hydra.run.dir``; the sub-command reaches those workers through ``SEQLM_COMMAND``;
- torchrun and SLURM's srun start every process themselves: each composes its own config, so
  the processes other than rank 0 are given a private working folder (``worker_run_dir``) and
  leave no second run directory beside rank 0's (Lightning broadcasts rank 0's checkpoint
  folder to them).

A Hydra multirun runs one job per point of a sweep; it does not mix with Lightning's launcher.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def external_rank() -> int | None:
    """This process's global rank when a launcher outside Lightning started every process of
    the run (torchrun: ``TORCHELASTIC_RUN_ID`` and ``RANK``; srun: ``SLURM_PROCID`` of several
    tasks), else None."""
    if "TORCHELASTIC_RUN_ID" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"])
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"])
    return None


RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's rank before any Trainer exists, read where Lightning reads it
    (``rank_zero_only.rank``: the first of ``RANK_VARIABLES`` set, else 0), without importing
    Lightning."""
    for name in RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return 0


def worker_run_dir(args: list[str]) -> list[str]:
    """Hydra overrides that give a process other than rank 0, started by torchrun or srun, a
    folder of its own under the temporary directory instead of a run directory of its own in
    ``outputs/`` (only rank 0 writes the run's files); none where the command line names the
    run directory (every process then uses that one) or for rank 0."""
    rank = external_rank()
    if not rank or any(a.startswith(("hydra.run.dir=", "resume=")) for a in args):
        return []
    folder = Path(tempfile.gettempdir()) / f"seqlm-rank{rank}-{os.getpid()}"
    return [f"hydra.run.dir={folder}", "hydra.output_subdir=null"]


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
