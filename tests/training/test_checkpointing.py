"""Checkpoints (seqlm.training.checkpointing): atomic writes that survive a failed save, no
checkpoint of non-finite weights, timed snapshots and init_from, their bad options."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config

from seqlm.commands.train import train
from seqlm.errors import SeqlmError
from seqlm.training.checkpointing import AtomicCheckpointIO

DESIGN_KEYS = ("loss", "ppl", "bits", "tokens")


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_save_dies(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("killed")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(SeqlmError, match=r"last.ckpt: cannot write it \(killed\)"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    kept = torch.load(path, weights_only=True)
    assert kept["step"] == 1 and torch.equal(kept["w"], torch.ones(3))
    io.save_checkpoint({"step": 3, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_a_checkpoint_of_non_finite_weights_is_refused():
    from seqlm.errors import Diverged
    from seqlm.training.module import LitLM

    lit = LitLM(
        make_config("train", ["model=rnn", "model.hidden_size=4", "model.emb_size=4"]).model,
        {},
        ["<unk>", "<eos>", "a"],
        None,
    )
    lit.check_finite()  # finite weights pass
    with torch.no_grad():
        lit.net.decoder.weight[0, 0] = float("nan")
    with pytest.raises(Diverged):
        lit.check_finite()
    with pytest.raises(Diverged):
        lit.on_save_checkpoint({})  # the hook Lightning calls before every save


def test_timed_snapshots_and_init_from(tmp_path):
    """``checkpoint.at_minutes`` writes at-{M}min.ckpt; ``init_from`` starts a new run from a
    checkpoint's weights (AWD-LSTM's finetune stage)."""
    first = tmp_path / "first"
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN, "checkpoint.at_minutes=[0.0001]"])
    train(cfg, run_dir=first)
    snapshot = first / "checkpoints" / "at-0.0001min.ckpt"
    assert snapshot.is_file()
    best = first / "checkpoints" / "best.ckpt"
    weights = torch.load(best, weights_only=True)["state_dict"]

    class _FirstWeights(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.seen = {k: v.clone() for k, v in pl_module.state_dict().items()}

    probe = _FirstWeights()
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN, f"init_from={best}"])
    train(cfg, run_dir=tmp_path / "second", callbacks=[probe], evaluate=False)
    for key, value in weights.items():
        torch.testing.assert_close(probe.seen[key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["checkpoint.at_minutes=[-1]"], "checkpoint.at_minutes=[-1] must be positive numbers"),
        (["init_from=nowhere.ckpt"], "init_from=nowhere.ckpt: no such checkpoint file"),
        (["optim=nt_asgd", "optim.nonmono=0"], "optim.nonmono=0 must be an integer >= 1"),
    ],
)
def test_bad_snapshot_init_and_averaging_options_get_one_line(overrides, message, tmp_path):
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN, *overrides])
    with pytest.raises(SeqlmError) as e:
        train(cfg, run_dir=tmp_path)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
