"""Gradients through time: how much the loss at one step still depends on the hidden state
``k`` steps earlier, ``g_k = ||dℓ_t / ds_{t-k}||_2`` (the tutorial's vanishing and exploding
gradients, measured).

The definition, so that anyone can recompute it (``docs/bptt.md``):

- the split's ids as one stream, in order; window ``j`` is tokens ``j(K+1) .. j(K+1)+K``
  (input) and the token after each of them (target), for ``j = 0 .. windows-1`` (fewer if the
  split is short);
- each window is one batch row and starts from a zero state;
- ``ℓ_t`` is the NLL of the window's last position, ``t = K``;
- ``s`` is the top layer's output state (``h`` for the LSTM);
- dropout is off; ``g_k`` is averaged over the windows (and its standard deviation kept).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from seqlm.errors import SeqlmError
from seqlm.models import RecurrentLM

SHOWN_LAGS = (0, 1, 2, 5, 10, 20, 50, 100, 200)  # the g_k logged as scalars by the callback


def windows_of(ids: np.ndarray, lags: int, windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (n, K+1), the target of each window's last position (n,)) by the definition."""
    if not isinstance(lags, int) or lags < 1:
        raise SeqlmError(f"lags={lags!r} must be an integer >= 1")
    if not isinstance(windows, int) or windows < 1:
        raise SeqlmError(f"windows={windows!r} must be an integer >= 1")
    span = lags + 1
    n = min(windows, (len(ids) - 1) // span)
    if n < 1:
        raise SeqlmError(f"lags={lags}: the split has {len(ids)} tokens, fewer than lags + 2")
    stream = torch.from_numpy(np.asarray(ids[: n * span + 1], dtype=np.int64))
    inputs = stream[: n * span].view(n, span)
    targets = stream[span : n * span + 1 : span]  # the token after each window's last input
    return inputs, targets


@torch.enable_grad()
def gradient_norms(net: RecurrentLM, ids: np.ndarray, lags: int, windows: int) -> np.ndarray:
    """``g_k`` of each window, shape (windows, lags + 1), column k = lag k. Any
    ``RecurrentLM``: fused layers or per-layer ones (AWD-LSTM), stepped through its own
    ``features`` one position at a time."""
    inputs, targets = windows_of(ids, lags, windows)
    was_training = net.training
    net.eval()  # dropout off
    # cuDNN refuses backward through an RNN in eval mode; torch's own kernels give the same
    # figures (the gpu tests compare them with the CPU's)
    try:
        with torch.backends.cudnn.flags(enabled=False):
            grads = _top_state_gradients(net, inputs, targets)
    finally:
        net.train(was_training)
    norms = torch.stack([g.norm(dim=1) for g in grads], 1).double()  # (n, K+1), by position
    return norms.flip(1).cpu().numpy()  # column k: position K - k


def _top_state_gradients(net: RecurrentLM, inputs: torch.Tensor, targets: torch.Tensor) -> tuple:
    """d(the last position's NLL) / d(s_t) for every position t of each window."""
    device = next(net.parameters()).device
    inputs, targets = inputs.to(device), targets.to(device)
    state, tops = None, []
    for t in range(inputs.shape[1]):  # one step at a time, so that every s_t is in the graph
        _, state = net.features(inputs[:, t : t + 1], state)
        tops.append(net.top_state(state))  # (n, H)
        state = net.with_top_state(state, tops[-1])  # the next step reads this s_t
    # the last position's prediction (in evaluation the decoder reads s_t itself)
    loss = -net.target_log_probs(tops[-1], targets).sum()
    return torch.autograd.grad(loss, tops)  # rows are independent: row b's own ℓ


def summary(norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) over the windows, for each lag."""
    return norms.mean(0), norms.std(0)


class GradientFlow(pl.Callback):
    """Logs the ``g_k`` curve of the training network on the validation split every
    ``every_n_steps`` optimizer steps: scalars ``grad_flow/g_K`` for a few lags, a W&B line
    chart ``grad_flow/curve`` (one per logging step, so its evolution shows on the dashboard),
    and a line in ``history.jsonl``.

    Args:
        every_n_steps: how often, in optimizer steps.
        lags: the largest lag K.
        windows: how many windows of the validation split are averaged.
    """

    def __init__(self, every_n_steps: int, lags: int, windows: int):
        if every_n_steps < 1:
            raise SeqlmError(f"callbacks.gradient_flow.every_n_steps={every_n_steps} must be >= 1")
        self.every, self.lags, self.windows = every_n_steps, lags, windows

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every or not trainer.is_global_zero or pl_module.pseudo:
            return
        ids = trainer.datamodule.ids["valid"]
        mean, std = summary(gradient_norms(pl_module.net, ids, self.lags, self.windows))
        scalars = {f"grad_flow/g_{k}": float(mean[k]) for k in SHOWN_LAGS if k <= self.lags}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        self._chart(trainer, mean, step)
        path = Path(trainer.default_root_dir) / "history.jsonl"
        row = {"epoch": trainer.current_epoch, "step": step, "wall": time.time()}
        row["gradient_flow"] = {"mean": mean.tolist(), "std": std.tolist()}
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    @staticmethod
    def _chart(trainer, mean: np.ndarray, step: int) -> None:
        from pytorch_lightning.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                table = wandb.Table(
                    columns=["k", "g_k"], data=[[k, float(g)] for k, g in enumerate(mean)]
                )
                chart = wandb.plot.line(
                    table, "k", "g_k", title=f"gradient through time, step {step}"
                )
                logger.experiment.log({"grad_flow/curve": chart, "trainer/global_step": step})
