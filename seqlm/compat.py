"""The places seqlm reads a library's private internals, each behind one function (and
nowhere else in seqlm).

Checked against torch 2.13.0, pytorch-lightning 2.6.6 and wandb 0.31.0 (the versions the test
suite runs; ``pyproject.toml`` pins the ranges to them). If a release renames one of these, the
function here is the only code to change, and tests/cli/test_compat.py says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is not imported for the commands that need none of it
    from torch import nn


def flat_weight_names(rnn: nn.RNNBase) -> list[str]:
    """The names of a recurrent module's weights in the order its kernel takes them
    (``weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0``; torch's ``_flat_weights_names``),
    for a call with replaced weights (weight drop)."""
    return list(rnn._flat_weights_names)


def logging_this_step(trainer: Any) -> bool:
    """Whether Lightning sends this training step's logged values to the loggers (every
    ``trainer.log_every_n_steps``): what its own ``LearningRateMonitor`` asks, through the
    private logger connector. ``True`` without a trainer."""
    return trainer is None or trainer._logger_connector.should_update_logs


def launched_workers(trainer: Any) -> list:
    """The ``subprocess.Popen`` of every DDP worker this process launched (Lightning's
    ``_SubprocessScriptLauncher.procs``: ranks 1.. of this node, in order); empty when this
    process launched none."""
    return list(getattr(trainer.strategy.launcher, "procs", None) or [])


def drop_wandb_anonymous(logger: Any) -> None:
    """Lightning passes ``anonymous=None`` to ``wandb.init`` (its ``_wandb_init`` keyword
    dictionary), and wandb warns that the setting "has no effect" whatever its value; leaving
    it out is the same run, quietly."""
    init = logger._wandb_init
    if init.get("anonymous", False) is None:
        init.pop("anonymous")


def loss_scale(trainer: Any) -> Any:
    """The current scale of the run's loss scaler (``trainer.precision=16-mixed``) as the
    scaler's own tensor (``GradScaler._get_scale_async``: ``get_scale()`` would sync the host
    on every step; the divergence guard reads it in the one sync it makes), or None when no
    scaler runs."""
    import torch

    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return None
    scale = scaler._get_scale_async()  # None until the first loss is scaled
    return torch.tensor(scaler.get_scale()) if scale is None else scale.detach().float()


def tree_map(fn, tree: Any, *rests: Any, is_leaf=None) -> Any:
    """``fn`` applied to every tensor of a nested state (tuples of tensors: an LSTM's ``(h,
    c)``, a layer stack's per-layer states), the structure kept; with ``rests``, to the
    tensors at the same place in each state (``fn(a, b, ...)``, as concatenating states
    needs): torch's ``_pytree.tree_map``, which torch has no public name for."""
    from torch.utils._pytree import tree_map as _tree_map

    return _tree_map(fn, tree, *rests, is_leaf=is_leaf)


def attached_trainer(module: Any) -> Any:
    """The Trainer a LightningModule is attached to, or None: Lightning's private ``_trainer``
    (its public ``trainer`` raises when there is none, as in a module used outside ``fit``)."""
    return module._trainer
