"""The private internals seqlm reads (seqlm.compat): each still has the shape seqlm expects on
the installed torch, Lightning and W&B."""

from __future__ import annotations

from types import SimpleNamespace

import pytorch_lightning as pl
import torch

from seqlm.compat import drop_wandb_anonymous, flat_weight_names, logging_this_step


def test_flat_weight_names_are_the_kernel_order_of_the_weights():
    lstm = torch.nn.LSTM(3, 4, num_layers=2)
    names = flat_weight_names(lstm)
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert len(names) == 8 and all(isinstance(getattr(lstm, n), torch.nn.Parameter) for n in names)


def test_logging_this_step_follows_log_every_n_steps(tmp_path):
    seen = []

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def training_step(self, batch, batch_idx):
            seen.append(logging_this_step(self.trainer))
            return (self.w * batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(6, 1)))
    trainer = pl.Trainer(
        max_epochs=1,
        log_every_n_steps=3,
        logger=pl.loggers.CSVLogger(str(tmp_path)),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(Probe(), data)
    assert seen == [False, False, True, False, False, True]  # steps 3 and 6 reach the loggers
    assert logging_this_step(None)


def test_drop_wandb_anonymous_removes_only_lightnings_none():
    logger = SimpleNamespace(_wandb_init={"anonymous": None, "project": "p"})
    drop_wandb_anonymous(logger)
    assert logger._wandb_init == {"project": "p"}
    chosen = SimpleNamespace(_wandb_init={"anonymous": "allow"})
    drop_wandb_anonymous(chosen)
    assert chosen._wandb_init == {"anonymous": "allow"}


def test_lightnings_wandb_logger_still_keeps_its_init_arguments(tmp_path):
    logger = pl.loggers.WandbLogger(save_dir=str(tmp_path), mode="offline")
    assert isinstance(logger._wandb_init, dict) and "anonymous" in logger._wandb_init


def test_tree_map_keeps_a_nested_state_and_the_attached_trainer_reads_none_outside_fit():
    from seqlm.compat import attached_trainer, tree_map

    state = (torch.ones(2), (torch.zeros(1), torch.full((3,), 2.0)))
    doubled = tree_map(lambda t: t * 2, state)
    assert isinstance(doubled, tuple) and isinstance(doubled[1], tuple)
    assert torch.equal(doubled[1][1], torch.full((3,), 4.0))
    assert attached_trainer(pl.LightningModule()) is None
