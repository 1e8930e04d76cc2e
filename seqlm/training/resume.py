"""Everything an exact resume needs, in one place.

``train resume=RUN_DIR`` continues a run in its own folder from ``checkpoints/last.ckpt``:
``resumed_config`` rebuilds the run's config. Lightning's checkpoint holds the weights, the
optimizer, the scheduler, the loop counters and the stream position (the data module's
state); ``ExactResume`` adds the carried recurrent state of every rank and the RNG states, and
puts them back before the first batch after a resume; NT-ASGD's state is its callback's
(``seqlm.training.averaging``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from seqlm.compat import tree_map
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


class ExactResume(pl.Callback):
    """Saves, in ``checkpoint["seqlm"]["resume"]``, the epoch, the world size, every rank's
    carried training state (``LitLM.carried["train"]``, gathered as ``(W, ...)`` per tensor)
    and every rank's RNG states; after a resume, puts them back before the first batch. The
    carried state is only put back within the same epoch (the stream then continues where it
    stopped) and the same world size (otherwise the streams are cut differently: a zero
    state).

    Under DDP each rank draws its own dropout and weight-drop masks: when training starts,
    rank ``r`` is seeded with ``seed + r`` (the weights were made before, from ``seed`` alone,
    and DDP copies rank 0's anyway). A resumed rank gets its own saved RNG states back; a rank
    the checkpoint did not have (more processes than before) keeps its fresh ``seed + r``.

    Args:
        seed: the run's seed (``cfg.seed``).
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._loaded: dict | None = None  # what on_load_checkpoint read, until the next batch

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            pl.seed_everything(self.seed + trainer.global_rank, workers=True, verbose=False)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("seqlm", {})["resume"] = {
            "epoch": pl_module.current_epoch,
            "world_size": trainer.world_size,
            "state": self._gather_train_state(trainer, pl_module),
            "rng_ranks": self._gather_rng(trainer),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint.get("seqlm", {}).get("resume")

    @staticmethod
    def _gather_rng(trainer: pl.Trainer) -> list[dict[str, Any]]:
        """Every rank's RNG states, in rank order (a collective under DDP)."""
        mine = rng_states()
        if trainer.world_size < 2 or not torch.distributed.is_initialized():
            return [mine]
        every: list = [None] * trainer.world_size
        # tensors travel as bytes: all_gather_object cannot unpickle a tensor's storage
        torch.distributed.all_gather_object(every, tree_map(_to_bytes, mine))
        return [tree_map(_from_bytes, states, is_leaf=_is_bytes) for states in every]

    @staticmethod
    def _gather_train_state(trainer: pl.Trainer, pl_module: pl.LightningModule) -> Any:
        """A collective: Lightning calls the saving hooks on every rank."""
        state = pl_module.carried.get("train")
        if state is None or not trainer.training:
            return None

        def gather(t: torch.Tensor) -> torch.Tensor:
            g = pl_module.all_gather(t)
            return (g if trainer.world_size > 1 else g[None]).cpu()

        return tree_map(gather, state)

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        resume, self._loaded = self._loaded, None
        if not resume:
            return
        rank = trainer.global_rank
        saved = resume.get("rng_ranks") or [resume["rng"]]  # older: rank 0's states alone
        if rank < len(saved):
            set_rng_states(saved[rank])
        state = resume["state"]
        if state is None or resume["epoch"] != pl_module.current_epoch:
            return
        if resume["world_size"] != trainer.world_size:
            return
        pl_module.carried["train"] = tree_map(lambda t: t[rank].to(pl_module.device), state)


def _to_bytes(x: Any) -> Any:
    if not isinstance(x, torch.Tensor):
        return x
    return ("tensor", x.cpu().numpy().tobytes(), str(x.dtype).removeprefix("torch."), x.shape)


def _is_bytes(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 4 and x[0] == "tensor"


def _from_bytes(x: Any) -> Any:
    if not _is_bytes(x):
        return x
    _, data, dtype, shape = x
    return torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype)).reshape(shape)


def rng_states() -> dict[str, Any]:
    """This process's RNG states: torch's, NumPy's, Python's, and its own GPU's (one: a DDP
    rank drives one device, and a resume may see fewer of them)."""
    states = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda_device"] = torch.cuda.get_rng_state()
    return states


def _numpy_state() -> tuple:
    """NumPy's global RNG state with its key array as a tensor: checkpoints are read with
    ``weights_only=True``, which refuses NumPy objects."""
    # the legacy global generator is the one seed_everything seeds and user code draws from
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return name, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(gauss)


def set_rng_states(states: dict[str, Any], cuda: Any = torch.cuda) -> None:
    """Put back what ``rng_states`` saved. GPU states go to the GPUs there are now: this
    process's own (``cuda_device``), or, from checkpoints that saved every visible GPU's
    (``cuda``, a list), as many of them as are visible (more are ignored, fewer kept fresh).
    ``cuda``: ``torch.cuda`` (a stand-in in tests)."""
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, gauss))  # noqa: NPY002
    random.setstate(states["python"])
    if not cuda.is_available():
        return
    if "cuda_device" in states:
        cuda.set_rng_state(states["cuda_device"])
    for device, state in enumerate(states.get("cuda", [])[: cuda.device_count()]):
        cuda.set_rng_state(state, device)
