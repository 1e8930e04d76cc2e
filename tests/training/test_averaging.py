"""NT-ASGD (seqlm.training.averaging): the trigger on a written-out trace of validation losses,
the mean of the iterates recorded step by step, and what a Lightning run's checkpoints hold."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config
from iterates import Iterates

from seqlm.commands.train import train
from seqlm.errors import SeqlmError
from seqlm.training.averaging import Averaging, should_switch


def test_the_trigger_fires_where_the_hand_written_trace_says():
    # nonmono 2: at validation k, compare v_k with the best of v_1 .. v_{k-3}
    losses = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0]
    # k=4: 3.5 > min(5)? no.  k=5: 3.2 > min(5, 4)? no.  k=6: 3.1 > min(5, 4, 3) = 3: yes.
    fired = [k for k in range(1, len(losses) + 1) if should_switch(losses[:k], 2)]
    assert fired[0] == 6
    # not "no improvement for nonmono validations in a row": 3.5, 3.2 are two such, no switch
    assert not should_switch([5.0, 4.0, 3.0, 3.5, 3.2], 2)
    avg = Averaging(2)
    params = [torch.nn.Parameter(torch.zeros(2))]
    events = [avg.record(v, params) for v in losses]
    assert events == [None] * 5 + ["switch", None]
    assert avg.switched_at == 6


def test_the_mean_is_the_arithmetic_mean_of_the_iterates_since_the_switch():
    torch.manual_seed(6)
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    avg = Averaging(1)
    avg.update(params)  # not switched yet: nothing kept
    assert avg.steps == 0 and not avg.active
    avg.start(params)
    iterates = []
    for _ in range(7):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))
        avg.update(params)
        iterates.append([p.detach().clone() for p in params])
    for i, m in enumerate(avg.mean):
        torch.testing.assert_close(m, torch.stack([it[i] for it in iterates]).mean(0))
    raw = avg.use_mean(params)
    torch.testing.assert_close(params[0].detach(), avg.mean[0])
    avg.restore(params, raw)
    torch.testing.assert_close(params[0].detach(), iterates[-1][0])


@pytest.mark.parametrize("bad", [0, -2, 1.5, "five", True])
def test_nonmono_below_one_is_refused(bad):
    with pytest.raises(SeqlmError, match=r"^optim\.nonmono="):
        Averaging(bad)


NT_ASGD = [
    *SMALL_AGREEMENT,
    *TINY_TRAIN,
    "optim=nt_asgd",
    "optim.nonmono=1",
    "optim.optimizer.lr=5.0",
    "trainer.max_epochs=4",
]


def test_nt_asgd_checkpoints_hold_the_mean_of_the_iterates_since_the_switch(tmp_path):
    probe = Iterates()
    cfg = make_config("train", [*NT_ASGD, "optim.average_from_start=true", "trainer.max_epochs=2"])
    train(cfg, run_dir=tmp_path, callbacks=[probe], evaluate=False)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    state = ckpt["seqlm"]["averaging"]
    n = len(probe.weights)
    assert state["steps"] == n and state["switched_at"] == 0
    mean = torch.stack(probe.weights).mean(0)
    torch.testing.assert_close(ckpt["state_dict"]["net.decoder.bias"], mean)
    # the raw weights travel beside the mean, for a resume
    index = [name for name, _ in pl.LightningModule.named_parameters(_lit(cfg))]
    raw = state["raw"][index.index("net.decoder.bias")]
    torch.testing.assert_close(raw, probe.weights[-1])


def _lit(cfg):
    from omegaconf import OmegaConf

    from seqlm.training.module import LitLM

    c = OmegaConf.to_container(cfg, resolve=True)
    return LitLM(c["model"], c["optim"], ["<unk>", "<eos>", "a"], None)
