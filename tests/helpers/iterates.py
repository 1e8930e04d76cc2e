"""A callback that records the weights and learning rate of every optimizer step (the NT-ASGD
and regulariser tests read the iterates they average)."""

import pytorch_lightning as pl
import torch


class Iterates(pl.Callback):
    """The weights after every optimizer step, and the lr each step used."""

    def __init__(self):
        self.weights: list[torch.Tensor] = []
        self.lrs: list[tuple[int, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append((self.length, optimizer.param_groups[0]["lr"]))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.length = batch["input"].shape[1]

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.weights.append(pl_module.net.decoder.bias.detach().clone())
