"""NT-ASGD (Merity et al. 2018, sec. 3): non-monotonically triggered averaged SGD.

Training runs the configured optimizer (SGD in the AWD-LSTM presets) until the validation loss
stops improving; from then on it keeps taking the same SGD steps and also keeps the running
mean of the weights after every step since the switch. Evaluation, ``best.ckpt`` and every
checkpoint's ``state_dict`` hold that mean; the checkpoint also holds the raw weights, the mean,
the number of averaged steps and the loss history, so a resume continues exactly.

The trigger, precisely: with the validation losses ``v_1 .. v_k`` measured so far (``v_k`` just
now), switch when ``k - 1 > nonmono`` and ``v_k > min(v_1 .. v_{k-1-nonmono})``: the loss is
worse than the best one measured more than ``nonmono`` validations ago. It is *not* "no
improvement for ``nonmono`` epochs in a row" (salesforce/awd-lstm-lm #47, #52: the code compares
with the best of the losses before the last ``nonmono``, which is what this does).

The finetune stage (awd-lstm-lm's ``finetune.py``) is a new run started from the best
checkpoint's weights (``init_from=``) with ``optim.average_from_start=true``: averaging from the
first step, and the same trigger, met by the averaged weights' loss, ends training.

``NTASGD`` is the Lightning callback that runs it, as Lightning's own SWA callback swaps averaged
weights in: the mean goes into the weights for every validation while fitting and comes out
again after it, every checkpoint's ``state_dict`` is the mean, and ``checkpoint["seqlm"]
["averaging"]`` holds the rest of the state.

Two departures from awd-lstm-lm's ``main.py``, both on purpose:
- it averaged ``model.parameters()`` only, leaving out the split-softmax criterion's weights
  (#77); here every parameter of the LightningModule is averaged, the decoder included;
- ``torch.optim.ASGD(t0=0, lambd=0)`` takes plain SGD steps and averages them, so rather than
  replacing the optimizer (and its state) this keeps the configured one and adds the mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch import nn

from seqlm.errors import SeqlmError


def should_switch(losses: list[float], nonmono: int) -> bool:
    """Whether the last of ``losses`` (the validation losses in order) triggers averaging."""
    *past, now = losses
    return len(past) > nonmono and now > min(past[:-nonmono])


class Averaging:
    """The NT-ASGD state of one model: the trigger's loss history and, once switched, the
    running mean of its parameters (``update`` after each optimizer step)."""

    def __init__(self, nonmono: int, from_start: bool = False):
        if isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1:
            raise SeqlmError(
                f"optim.nonmono={nonmono!r} must be an integer >= 1 (validations without "
                "improvement before averaging starts), or null for no averaging"
            )
        self.nonmono, self.from_start = nonmono, bool(from_start)
        self.losses: list[float] = []  # validation losses, one per validation
        self.switched_at: int | None = None  # the validation (1-based) that switched
        self.steps = 0  # iterates in the mean
        self.mean: list[torch.Tensor] | None = None

    @property
    def active(self) -> bool:
        return self.mean is not None

    def start(self, params: Iterable[nn.Parameter]) -> None:
        """Average from here on (the mean holds no iterate yet: the first step's replaces it)."""
        self.switched_at = len(self.losses)
        self.mean = [p.detach().clone() for p in params]

    def record(self, loss: float, params: Iterable[nn.Parameter]) -> str | None:
        """Take one validation loss. Returns ``"switch"`` when it starts the averaging,
        ``"stop"`` when it meets the trigger while averaging from the start (finetuning is
        over), else ``None``."""
        self.losses.append(float(loss))
        if not should_switch(self.losses, self.nonmono):
            return None
        if self.from_start:
            return "stop"
        if self.active:
            return None
        self.start(params)
        return "switch"

    @torch.no_grad()
    def update(self, params: Iterable[nn.Parameter]) -> None:
        """Fold the weights after an optimizer step into the mean (``mean += (w - mean) / n``,
        as ``torch.optim.ASGD``)."""
        if self.mean is None:
            return
        self.steps += 1
        for m, p in zip(self.mean, params):
            m.add_(p.detach() - m, alpha=1.0 / self.steps)

    @torch.no_grad()
    def use_mean(self, params: list[nn.Parameter]) -> list[torch.Tensor] | None:
        """Put the mean into ``params`` (for an evaluation); returns the raw weights for
        ``restore`` (``None`` when not active: nothing changed)."""
        if self.mean is None:
            return None
        raw = [p.detach().clone() for p in params]
        for p, m in zip(params, self.mean):
            p.copy_(m)
        return raw

    @torch.no_grad()
    def restore(self, params: list[nn.Parameter], raw: list[torch.Tensor]) -> None:
        for p, r in zip(params, raw):
            p.copy_(r)

    def averaged_state_dict(self, module: nn.Module, state_dict: dict) -> dict:
        """``state_dict`` (of ``module``) with every parameter's entry replaced by its mean
        (under each name a tied parameter has)."""
        if self.mean is None:
            return state_dict
        index = {id(p): i for i, p in enumerate(module.parameters())}
        out = dict(state_dict)
        for name, p in module.named_parameters(remove_duplicate=False):
            if name in out:
                out[name] = self.mean[index[id(p)]].detach().clone()
        return out

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self, params: list[nn.Parameter]) -> dict:
        """Everything a resume needs, the raw weights included (the checkpoint's ``state_dict``
        holds the mean)."""
        state = {"losses": list(self.losses), "steps": self.steps}
        state["switched_at"] = self.switched_at
        if self.mean is not None:
            state["mean"] = [m.detach().cpu().clone() for m in self.mean]
            state["raw"] = [p.detach().cpu().clone() for p in params]
        return state

    def load_state_dict(self, state: dict, params: list[nn.Parameter]) -> None:
        """Restore the history and the mean, and put the raw weights back into ``params`` (a
        checkpoint's ``state_dict`` holds the mean, which is what evaluation loads)."""
        self.losses = [float(v) for v in state["losses"]]
        self.steps, self.switched_at = int(state["steps"]), state["switched_at"]
        self.mean = None
        if "mean" in state:
            self.mean = [m.to(p.device, p.dtype) for m, p in zip(state["mean"], params)]
            with torch.no_grad():
                for p, r in zip(params, state["raw"]):
                    p.copy_(r)


class NTASGD(pl.Callback):
    """NT-ASGD during ``fit``: ``Averaging(nonmono, from_start)`` of every parameter of the
    LightningModule, updated after every optimizer step.

    Args:
        nonmono: validations without improvement before averaging starts (``optim.nonmono``).
        from_start: average from the first step; the trigger then ends training (finetuning,
            ``optim.average_from_start``).
    """

    def __init__(self, nonmono: int, from_start: bool = False):
        self.averaging = Averaging(nonmono, from_start)
        self._raw: list[torch.Tensor] | None = None  # the weights while the mean is evaluated
        self._loaded: dict | None = None  # a resumed run's state, until training starts
        self._step = 0  # the optimizer step last folded into the mean

    @staticmethod
    def _fitting(trainer: pl.Trainer) -> bool:
        return trainer.state.fn == "fit" and not trainer.sanity_checking

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resume: the checkpoint's ``state_dict`` was the mean; the raw weights and the
        averaging state go back in before the first step."""
        params = list(pl_module.parameters())
        if self._loaded is not None:
            self.averaging.load_state_dict(self._loaded, params)
            self._loaded = None
        elif self.averaging.from_start and not self.averaging.active:
            self.averaging.start(params)
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        # before any checkpoint of this step: Lightning runs checkpoint callbacks last, and
        # make_trainer puts this one before seqlm's timed snapshots
        if trainer.global_step != self._step:  # an optimizer step was taken (accumulation)
            self._step = trainer.global_step
            self.averaging.update(pl_module.parameters())

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
        if self._fitting(trainer):  # NT-ASGD evaluates the mean
            self._raw = self.averaging.use_mean(list(pl_module.parameters()))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Back to the raw weights after evaluating the mean; the loss goes to the trigger
        (the module's ``results`` hold it by now, before any checkpoint callback runs)."""
        if not self._fitting(trainer):
            return
        params = list(pl_module.parameters())
        if self._raw is not None:
            self.averaging.restore(params, self._raw)
            self._raw = None
        loss = float(pl_module.results["val"]["val/loss"])
        event = self.averaging.record(loss, params)
        if event is None:
            return
        losses, nonmono = self.averaging.losses, self.averaging.nonmono
        why = (
            f"NT-ASGD: validation loss {loss:.4f} is worse than the best from more than "
            f"{nonmono} validations ago ({min(losses[: -nonmono - 1]):.4f})"
        )
        if event == "switch":
            rank_zero_info(f"{why}: averaging the weights from step {trainer.global_step} on")
        else:  # averaging from the start (finetuning): the trigger ends training
            rank_zero_info(f"{why}: finetuning stops")
            trainer.should_stop = True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """The mean is what evaluation, ``best.ckpt`` and ``init_from`` load; the raw weights
        and the rest of the state ride beside it for a resume."""
        params = list(pl_module.parameters())
        sd = checkpoint["state_dict"]
        checkpoint["state_dict"] = self.averaging.averaged_state_dict(pl_module, sd)
        checkpoint.setdefault("seqlm", {})["averaging"] = self.averaging.state_dict(params)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint.get("seqlm", {}).get("averaging")
