"""``LitLM``: the one LightningModule for every recurrent model. It only steps: the shared
step, the metrics, the optimizers. What training needs beside it lives in
``seqlm.training``: NT-ASGD (a callback), the divergence guard, what an exact resume saves.

For the left-to-right models the recurrent state is carried from window to window and
detached (truncated BPTT), one state per stage, reset when an epoch starts. Evaluation sums
per-token NLL into ``Perplexity``; the ratio and the ``exp`` are taken once per epoch
(``docs/evaluation.md``).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from seqlm.build import build
from seqlm.compat import attached_trainer, logging_this_step, loss_scale
from seqlm.data.batching import IGNORE
from seqlm.evaluation.metrics import AgreementAccuracy, Perplexity
from seqlm.evaluation.summary import agreement_summary, summarize
from seqlm.models import ClozeLM, detach_state
from seqlm.training.divergence import DivergenceGuard


def versions() -> dict[str, str]:
    """The versions a checkpoint is written with: seqlm's (as installed), torch's and
    Lightning's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("seqlm")
    except PackageNotFoundError:  # run from a checkout that was never installed
        __version__ = "unknown"
    return {
        "seqlm": __version__,
        "torch": str(torch.__version__),
        "pytorch_lightning": pl.__version__,
    }


class LitLM(pl.LightningModule):
    """Args:
    model: the network's config: ``_target_`` (``RecurrentLM`` or ``ClozeLM``) and arguments.
    optim: ``optimizer`` and optional ``scheduler`` configs, both ``_partial_``; a
        ``ReduceLROnPlateau`` scheduler watches ``val/loss``.
    vocab: the data's vocabulary (its tokens in id order); saved in every checkpoint.
    run_config: the run's resolved config; saved in every checkpoint.
    """

    def __init__(self, model: dict, optim: dict, vocab: list[str], run_config: dict | None):
        super().__init__()
        # hyper-parameters are what the network and optimizer are built from; the vocabulary
        # and run config go beside them in the checkpoint (on_save_checkpoint), not to loggers
        self.save_hyperparameters(ignore=["vocab", "run_config"])
        self.vocab_tokens, self.run_config = list(vocab), run_config
        self.net = instantiate(model, vocab_size=len(vocab), _convert_="all")
        self.pseudo = isinstance(self.net, ClozeLM)
        self.ppl = nn.ModuleDict({s: Perplexity() for s in ("val", "test")})
        self.agreement = nn.ModuleDict({s: AgreementAccuracy() for s in ("val", "test")})
        self.results: dict[str, dict[str, Any]] = {}
        self.carried: dict[str, Any] = {}  # each stage's recurrent state, detached
        self.guard = DivergenceGuard(len(vocab))
        self.tokens_seen = 0  # training targets this process has trained on (this fit)
        self.tokens_before = 0  # training targets of every rank before this fit (a resume)
        self._tick: tuple[float, int] | None = None
        self._epoch_started = 0.0
        self._base_lrs: list[float] | None = None  # the rates a scaled step puts back

    # -- the shared step ---------------------------------------------------------------------
    def hidden(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """The network's features (B, T, D) for ``batch["target"]``; carries the state of
        ``stage``."""
        if self.pseudo:
            return self.net.features(batch["input"], ClozeLM.lengths_of(batch["target"]))
        hidden, state = self.net.features(batch["input"], self.carried.get(stage))
        self.carried[stage] = detach_state(state)
        return hidden

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "bptt" in batch:  # a variable-length window (AWD-LSTM): lr x seq_len / bptt
            self._scale_lr(batch["input"].shape[1] / batch["bptt"])
        target = batch["target"]
        lp = self.net.target_log_probs(self.hidden(batch, "train"), target)  # fused, float32
        kept = (target != IGNORE).sum()
        loss = -lp.sum() / kept.clamp(min=1)  # the mean NLL over the batch's targets
        self.guard.loss = loss.detach()  # the cross-entropy alone is what train/loss shows
        self.log("train/loss", loss, prog_bar=True)
        # streams have no padding (no host sync for them); sentence batches do
        self.tokens_seen += int(kept) if self.pseudo else target.numel()
        if logging_this_step(attached_trainer(self)):
            self.log("train/ppl", torch.exp(loss.detach()))
            now = time.perf_counter()
            if self._tick is not None:  # training targets per second since the last log
                rate = (self.tokens_seen - self._tick[1]) / max(now - self._tick[0], 1e-9)
                self.log("train/tokens_per_s", rate)
            self._tick = (now, self.tokens_seen)
        penalty = getattr(self.net, "penalty", None)  # AWD-LSTM's AR + TAR, when asked for
        return loss if penalty is None else loss + penalty

    def _scale_lr(self, factor: float) -> None:
        """Scale every group's learning rate for this step only (``optimizer_step`` puts the
        rates back): AWD-LSTM's rule for windows of random length, so that a token weighs the
        same in a short window as in a long one (the loss is a mean over the window)."""
        optimizer = self.optimizers(use_pl_optimizer=False)
        if self._base_lrs is None:  # (accumulating batches: the step's last window scales)
            self._base_lrs = [group["lr"] for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, self._base_lrs):
            group["lr"] = lr * factor

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().optimizer_step(*args, **kwargs)
        finally:
            if self._base_lrs is not None:
                optimizer = self.optimizers(use_pl_optimizer=False)
                for group, lr in zip(optimizer.param_groups, self._base_lrs):
                    group["lr"] = lr
                self._base_lrs = None

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        hidden, target = self.hidden(batch, stage), batch["target"]
        keep = target != IGNORE
        # the exact path, as every scorer's (the fused one is training's): V-wide in float32,
        # each target's log-probability in float64
        lp = self.net.target_log_probs(hidden, target, torch.float64)
        self.ppl[stage].update(-lp[keep])
        if "wrong" in batch:  # the built-in corpus; every rank updates, even with no probe
            probe = batch["wrong"] != IGNORE  # (B, T) main-verb positions
            logp = self.net.log_probs(hidden[probe])  # (P, V)
            right = logp.gather(1, target[probe][:, None]).squeeze(1)
            wrong = logp.gather(1, batch["wrong"][probe][:, None]).squeeze(1)
            self.agreement[stage].update(right > wrong, batch["distance"][probe])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # -- epoch boundaries: reset carried state, reduce sums -----------------------------------
    def on_train_epoch_start(self) -> None:
        self.carried.pop("train", None)
        self._tick = None
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        self.log("time/epoch_s", time.perf_counter() - self._epoch_started)

    def on_validation_epoch_start(self) -> None:
        self.carried.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self.carried.pop("test", None)

    def _epoch_end(self, stage: str) -> None:
        # compute() all-reduces the sums across ranks; the ratio and exp are taken once
        nll_sum, tokens = self.ppl[stage].compute()
        agreement = self.agreement[stage]  # updated on the built-in corpus only
        by_distance = agreement.compute() if agreement.update_called else {}
        self.ppl[stage].reset()
        self.agreement[stage].reset()
        out: dict[str, Any] = summarize(nll_sum, tokens, stage, self.pseudo)
        if by_distance:
            out.update(agreement_summary(by_distance, stage))
        self.log_dict({k: float(v) for k, v in out.items()}, sync_dist=False)
        if by_distance:
            out[f"{stage}/agreement_by_distance"] = by_distance
        if not self.trainer.sanity_checking:
            self.results[stage] = out

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    # -- optimization --------------------------------------------------------------------------
    def configure_optimizers(self):
        """The optimizer and its scheduler. The scheduler is named ``train/lr`` so that
        Lightning's ``LearningRateMonitor`` logs the learning rate under that key; without a
        configured one, a constant schedule stands in (the rate then never changes)."""
        optim = self.hparams.optim
        optimizer = build("optim.optimizer", optim["optimizer"], self.parameters())
        scheduler = {"name": "train/lr", "interval": "epoch"}
        if optim.get("scheduler"):
            # strict=False: without validation (limit_val_batches=0) a plateau rule has nothing
            # to watch, and Lightning then skips it with a warning instead of stopping
            scheduler["scheduler"] = build("optim.scheduler", optim["scheduler"], optimizer)
            scheduler.update(monitor="val/loss", strict=False)
        else:
            scheduler["scheduler"] = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Clip by global norm (the tutorial's remedy for exploding gradients) and log the norm
        *before* clipping, which is what shows an explosion; the guard then stops a step that
        blew up before it is applied (``Diverged``)."""
        max_norm = float(gradient_clip_val) if gradient_clip_val else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)
        trainer = attached_trainer(self)
        scale = loss_scale(trainer) if trainer is not None else None
        reduce = None
        if trainer is not None and trainer.world_size > 1:  # one verdict for every rank
            reduce = partial(trainer.strategy.reduce, reduce_op="max")
        applied = self.guard.check(norm, self.global_step, self._lr(), scale, reduce)
        if applied and logging_this_step(trainer):  # a step the scaler skips shows no norm
            self.log("train/grad_norm", norm)

    def _lr(self) -> float:
        trainer = attached_trainer(self)
        return trainer.optimizers[0].param_groups[0]["lr"] if trainer else float("nan")

    # -- checkpoints carry the vocabulary and the run's config ---------------------------------
    def check_finite(self) -> None:
        """``Diverged`` if any weight is NaN or infinite: a checkpoint that resume would load
        as good must never hold one."""
        if not all(torch.isfinite(p).all() for p in self.parameters()):
            raise self.guard.diverged(self.global_step, self._lr())

    def tokens_trained(self) -> int:
        """Training targets of every rank since the run began, resumes included (each rank
        trains as many stream targets; sentence batches differ by a few between ranks)."""
        trainer = attached_trainer(self)
        world = trainer.world_size if trainer is not None else 1
        return self.tokens_before + self.tokens_seen * world

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite()
        # beside what callbacks put there (seqlm.training: the resume state, NT-ASGD's)
        checkpoint.setdefault("seqlm", {}).update(
            vocab=self.vocab_tokens,
            config=self.run_config,
            tokens_trained=self.tokens_trained(),
            versions=versions(),
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("seqlm", {})
        self.vocab_tokens = extra.get("vocab", self.vocab_tokens)
        self.run_config = extra.get("config", self.run_config)
        self.tokens_before = int(extra.get("tokens_trained", 0))
