"""Experiment tracking: the ``logger=`` group, W&B's online/offline choice, the final logging.

A run logs the same keys to every logger (``evaluation.schema``, ``docs/evaluation.md``). W&B runs
online only when an API key is configured and the service answers within ``PROBE_S`` seconds;
otherwise offline, into ``RUN_DIR/wandb/offline-run-*``, to be uploaded later with
``wandb sync``. ``WANDB_MODE`` set by the user always wins.
"""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig

from seqlm.build import build
from seqlm.compat import drop_wandb_anonymous

PROBE_S = 2.0  # seconds to wait for the W&B service before going offline
WANDB_TARGET = "pytorch_lightning.loggers.WandbLogger"


def _wandb_address() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    return url.hostname or "", url.port or (80 if url.scheme == "http" else 443)


def has_api_key() -> bool:
    """An API key in ``WANDB_API_KEY`` or in ``~/.netrc`` (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_wandb_address()[0]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def service_answers(timeout: float = PROBE_S) -> bool:
    """Whether a TCP connection to the W&B host opens within ``timeout`` seconds."""
    try:
        with socket.create_connection(_wandb_address(), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode() -> str:
    """``WANDB_MODE`` if the user set it, else ``online`` with a key and a reachable service,
    else ``offline``. Never blocks for more than ``PROBE_S`` seconds."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if has_api_key() and service_answers() else "offline"


def sweep_group() -> str | None:
    """``sweep-DATE_TIME`` for the runs of one Hydra multirun (``-m``), else ``None``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweep = Path(HydraConfig.get().sweep.dir)
    return f"sweep-{sweep.parent.name}_{sweep.name}"


def make_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """Instantiate every logger in ``cfg.logger`` (a mapping name -> config), saving into the
    run directory. W&B gets its mode and, inside a multirun, the sweep's group."""
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        extra: dict[str, Any] = {"save_dir": str(run_dir)}
        if conf.get("_target_") == WANDB_TARGET:
            import wandb

            mode = wandb_mode()
            extra["mode"] = mode
            extra["group"] = conf.get("group") or sweep_group()
            extra["settings"] = wandb.Settings(silent=True)
            if mode != "online":  # artifacts are uploaded by `wandb sync` from the run's files
                extra["log_model"] = False
            previous = wandb_run_id(run_dir) if cfg.get("resume") else None
            if previous is not None:  # a resumed training stays one W&B run
                extra["id"], extra["resume"] = previous, "allow"
        logger = build(f"logger.{name}", conf, **extra)
        if conf.get("_target_") == WANDB_TARGET:
            drop_wandb_anonymous(logger)
        loggers.append(logger)
    return loggers


def wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run a run directory already holds (its latest, online or offline),
    or None: W&B names each run's folder ``[offline-]run-DATE_TIME-ID``."""
    folders = sorted(
        (p for p in (run_dir / "wandb").glob("*run-*-*") if p.is_dir()),
        key=lambda p: p.name.split("run-", 1)[1],
    )
    return folders[-1].name.rsplit("-", 1)[1] if folders else None


def wandb_runs(loggers: list) -> list:
    """The W&B run objects among ``loggers`` (created on first use, rank 0 only)."""
    if not loggers:
        return []  # no logger: Lightning need not be imported to know it
    from pytorch_lightning.loggers import WandbLogger

    return [lg.experiment for lg in loggers if isinstance(lg, WandbLogger)]


def log_final(loggers: list, config: dict, metrics: dict[str, Any], failed: bool = False) -> None:
    """The run's config and final scalars to every logger; for W&B also the agreement table and
    its line chart. Then the W&B runs are finished (a multirun starts the next one), as failed
    with ``failed`` (a diverged run)."""
    scalars = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for logger in loggers:
        logger.log_hyperparams(config)
        logger.log_metrics(scalars)
        logger.finalize("failed" if failed else "success")
    for run in wandb_runs(loggers):
        import wandb

        for split in ("val", "test"):
            by_d = metrics.get(f"{split}/agreement_by_distance")
            if not by_d:
                continue
            rows = [[int(d), c / t, int(t)] for d, (c, t) in sorted(by_d.items())]
            table = wandb.Table(columns=["distance", "accuracy", "events"], data=rows)
            run.log(
                {
                    f"{split}/agreement_table": table,
                    f"{split}/agreement_chart": wandb.plot.line(
                        table, "distance", "accuracy", title=f"{split} agreement by distance"
                    ),
                }
            )
        # strings (model name, hashes) are not metrics, but belong in the summary too
        run.summary.update({k: v for k, v in metrics.items() if isinstance(v, str)})
        announce(run)
        run.finish(exit_code=1 if failed else 0)


def announce(run: Any) -> None:
    """One line: where an offline run is and how to upload it, or an online run's URL."""
    if run.offline:
        where = Path(run.dir).parent
        parts = sorted(where.parent.glob(f"offline-run-*-{run.id}"))
        if len(parts) > 1:  # a resumed run: one folder per session, one W&B run
            where = where.parent / f"offline-run-*-{run.id}"
            print(
                f"W&B offline run {run.id}, {len(parts)} sessions: upload with wandb sync {where}"
            )
            return
        print(f"W&B offline run: {where}  (upload later with: wandb sync {where})")
    else:
        print(f"W&B run: {run.url}")
