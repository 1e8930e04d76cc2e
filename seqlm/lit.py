"""``LitLM``: the one LightningModule for every recurrent model.

One step function serves training and evaluation. For the left-to-right models the recurrent
state is carried from window to window and detached (truncated BPTT), one state per stage,
reset when an epoch starts. Evaluation sums per-token NLL into ``Perplexity``; the ratio and
the ``exp`` are taken once per epoch (``docs/evaluation.md``).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch import nn
from torch.utils._pytree import tree_map

from seqlm.averaging import Averaging
from seqlm.build import build
from seqlm.data.batching import IGNORE
from seqlm.errors import Diverged
from seqlm.metrics import AgreementAccuracy, Perplexity, agreement_summary, summarize
from seqlm.models import ClozeLM, detach_state

STAGES = ("train", "val", "test")
RECENT_NORMS = 10  # gradient norms a divergence report shows
# A training loss this many times the uniform guess (ln V nats) is a blown-up model, finite or
# not: every model starts near ln V, and pytorch/examples' tanh RNN at lr 20 without clipping
# sits at 80-170 nats on PTB (ln V = 9.2) instead of NaN.
DIVERGED_LOSS_FACTOR = 3


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
        self._state: dict[str, Any] = {}
        self._tick: tuple[float, int] | None = None
        self._epoch_started = 0.0
        self.tokens_seen = 0  # training targets this process has trained on (this fit)
        self._resume: dict | None = None  # what on_load_checkpoint read, until the next batch
        self._recent_norms: deque[float] = deque(maxlen=RECENT_NORMS)  # pre-clipping norms
        self._last_loss: torch.Tensor | None = None
        self._base_lrs: list[float] | None = None  # the rates a scaled step puts back
        nonmono = optim.get("nonmono")  # NT-ASGD (seqlm.averaging), when set
        self.averaging = None
        if nonmono is not None:
            self.averaging = Averaging(nonmono, optim.get("average_from_start", False))
        self._raw: list[torch.Tensor] | None = None  # the weights while the mean is evaluated
        self._resume_averaging: dict | None = None

    # -- the shared step ---------------------------------------------------------------------
    def logits(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """(B, T, V) logits for ``batch["target"]``; carries the state of ``stage``."""
        if self.pseudo:
            return self.net(batch["input"], ClozeLM.lengths_of(batch["target"]))
        logits, state = self.net(batch["input"], self._state.get(stage))
        self._state[stage] = detach_state(state)
        return logits

    def token_nll(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, ...]:
        """Per-position NLL in nats (B*T,), computed in float32 whatever the precision."""
        logits = self.logits(batch, stage)
        nll = F.cross_entropy(
            logits.flatten(0, 1).float(),
            batch["target"].flatten(),
            ignore_index=IGNORE,
            reduction="none",
        )
        return nll, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "bptt" in batch:  # a variable-length window (AWD-LSTM): lr x seq_len / bptt
            self._scale_lr(batch["input"].shape[1] / batch["bptt"])
        logits = self.logits(batch, "train")
        # the fused mean over non-ignored targets (= sum of NLL / tokens), float32 always
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), batch["target"].flatten(), ignore_index=IGNORE
        )
        self._last_loss = loss.detach()  # the cross-entropy alone is what train/loss shows
        self.log("train/loss", loss, prog_bar=True)
        target = batch["target"]  # streams have no padding; sentence batches do
        self.tokens_seen += int((target != IGNORE).sum()) if self.pseudo else target.numel()
        if self._logging_now():
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
        if self.averaging is not None:  # before any callback can checkpoint this step
            self.averaging.update(self.parameters())

    def _logging_now(self) -> bool:
        """Whether Lightning sends this training step's values to the loggers (every
        ``trainer.log_every_n_steps``). Values logged on other steps are never seen, and each
        ``self.log`` call costs ~0.5% of a small model's step, so only these steps log them.
        ``should_update_logs`` is what Lightning's own LearningRateMonitor asks."""
        trainer = self._trainer
        return trainer is None or trainer._logger_connector.should_update_logs

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        nll, logits = self.token_nll(batch, stage)
        keep = batch["target"].flatten() != IGNORE
        self.ppl[stage].update(nll[keep])
        if "wrong" in batch:  # the built-in corpus; every rank updates, even with no probe
            probe = batch["wrong"] != IGNORE  # (B, T) main-verb positions
            logp = torch.log_softmax(logits[probe].float(), dim=-1)  # (P, V)
            right = logp.gather(1, batch["target"][probe][:, None]).squeeze(1)
            wrong = logp.gather(1, batch["wrong"][probe][:, None]).squeeze(1)
            self.agreement[stage].update(right > wrong, batch["distance"][probe])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # -- epoch boundaries: reset carried state, reduce sums -----------------------------------
    def on_train_epoch_start(self) -> None:
        self._state.pop("train", None)
        self._tick = None
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        self.log("time/epoch_s", time.perf_counter() - self._epoch_started)

    def on_validation_epoch_start(self) -> None:
        self._state.pop("val", None)
        if self.averaging is not None and self._fitting():  # NT-ASGD evaluates the mean
            self._raw = self.averaging.use_mean(list(self.parameters()))

    def _fitting(self) -> bool:
        return self.trainer.state.fn == "fit" and not self.trainer.sanity_checking

    def on_test_epoch_start(self) -> None:
        self._state.pop("test", None)

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
        if stage == "val" and self.averaging is not None and self._fitting():
            self._average_after_validation(float(out["val/loss"]))

    def _average_after_validation(self, loss: float) -> None:
        """Back to the raw weights after evaluating the mean; the loss goes to the trigger."""
        params = list(self.parameters())
        if self._raw is not None:
            self.averaging.restore(params, self._raw)
            self._raw = None
        event = self.averaging.record(loss, params)
        if event is None:
            return
        losses, nonmono = self.averaging.losses, self.averaging.nonmono
        why = (
            f"NT-ASGD: validation loss {loss:.4f} is worse than the best from more than "
            f"{nonmono} validations ago ({min(losses[: -nonmono - 1]):.4f})"
        )
        if event == "switch":
            rank_zero_info(f"{why}: averaging the weights from step {self.global_step} on")
        else:  # averaging from the start (finetuning): the trigger ends training
            rank_zero_info(f"{why}: finetuning stops")
            self.trainer.should_stop = True

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
        *before* clipping, which is what shows an explosion. A norm or loss that is not finite,
        or a loss above ``DIVERGED_LOSS_FACTOR`` times the uniform guess, stops training before
        the step is applied: ``Diverged``."""
        max_norm = float(gradient_clip_val) if gradient_clip_val else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)
        if self._logging_now():
            self.log("train/grad_norm", norm)
        self._recent_norms.append(float(norm))  # host syncs on GPU: two scalars a step
        loss = float(self._last_loss) if self._last_loss is not None else 0.0
        ceiling = DIVERGED_LOSS_FACTOR * math.log(len(self.vocab_tokens))
        if not math.isfinite(self._recent_norms[-1]) or not math.isfinite(loss):
            raise self._diverged()
        if loss > ceiling:
            raise self._diverged(f"over {DIVERGED_LOSS_FACTOR}x the uniform guess, {ceiling:.3g}")

    def _diverged(self, why: str = "") -> Diverged:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self._trainer else float("nan")
        loss = float(self._last_loss) if self._last_loss is not None else float("nan")
        return Diverged(self.global_step, lr, loss, list(self._recent_norms), why)

    # -- checkpoints carry the vocabulary, the run's config, and what a resume needs ----------
    # Lightning saves weights, optimizer, scheduler, loop counters and the stream position (the
    # loader's state); the carried state of every rank and the RNG are added here.
    def check_finite(self) -> None:
        """``Diverged`` if any weight is NaN or infinite: a checkpoint that resume would load
        as good must never hold one."""
        if not all(torch.isfinite(p).all() for p in self.parameters()):
            raise self._diverged()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite()
        checkpoint["seqlm"] = {
            "vocab": self.vocab_tokens,
            "config": self.run_config,
            "resume": {
                "epoch": self.current_epoch,
                "world_size": self.trainer.world_size,
                "state": self._gather_train_state(),
                "rng": _rng_states(),
            },
        }
        if self.averaging is not None:  # the mean is what evaluation and best.ckpt load
            sd = checkpoint["state_dict"]
            checkpoint["state_dict"] = self.averaging.averaged_state_dict(self, sd)
            checkpoint["seqlm"]["averaging"] = self.averaging.state_dict(list(self.parameters()))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("seqlm", {})
        self.vocab_tokens = extra.get("vocab", self.vocab_tokens)
        self.run_config = extra.get("config", self.run_config)
        self._resume = extra.get("resume")
        self._resume_averaging = extra.get("averaging")

    def on_train_start(self) -> None:
        """A resume with NT-ASGD: the checkpoint's ``state_dict`` was the mean; the raw weights
        and the averaging state go back in before the first step."""
        state, self._resume_averaging = self._resume_averaging, None
        if self.averaging is None:
            return
        if state is not None:
            self.averaging.load_state_dict(state, list(self.parameters()))
        elif self.averaging.from_start and not self.averaging.active:
            self.averaging.start(self.parameters())

    def _gather_train_state(self) -> Any:
        """The carried training state of every rank, ``(W, ...)`` per tensor, on the CPU.
        A collective: Lightning calls this hook on every rank."""
        state = self._state.get("train")
        if state is None or not self.trainer.training:
            return None

        def gather(t: torch.Tensor) -> torch.Tensor:
            g = self.all_gather(t)
            return (g if self.trainer.world_size > 1 else g[None]).cpu()

        return tree_map(gather, state)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """The first batch after a resume: put back the RNG, and the carried state when the
        checkpoint was taken in this epoch (the stream then continues where it stopped)."""
        resume, self._resume = self._resume, None
        if not resume:
            return
        _set_rng_states(resume["rng"])
        state = resume["state"]
        if state is None or resume["epoch"] != self.current_epoch:
            return
        if resume["world_size"] != self.trainer.world_size:
            return  # streams are cut differently: start from a zero state
        rank = self.global_rank
        self._state["train"] = tree_map(lambda t: t[rank].to(self.device), state)


def _rng_states() -> dict[str, Any]:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _numpy_state() -> tuple:
    """NumPy's global RNG state with its key array as a tensor: checkpoints are read with
    ``weights_only=True``, which refuses NumPy objects."""
    # the legacy global generator is the one seed_everything seeds and user code draws from
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return name, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(gauss)


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, gauss))  # noqa: NPY002
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
