"""What is a user's mistake (one line, exit 2) and what is a bug (a traceback and a request for
a report), and refusals that keep their cause."""

from __future__ import annotations

import errno
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, seqlm

from seqlm.cli.overrides import checked
from seqlm.commands.mix import check_mixable
from seqlm.commands.rescore import lm_figures
from seqlm.commands.train import train
from seqlm.errors import SeqlmError, user_error
from seqlm.scorers import load_scorer


def test_an_error_raised_while_handling_a_user_error_is_a_bug():
    try:
        try:
            raise SeqlmError("data.path=x: no such file")
        except SeqlmError:
            {}["a key"]  # a bug in the handler
    except KeyError as e:
        assert user_error(e) is None  # not the earlier one-line message
    # what a constructor raised, wrapped by Hydra's instantiate ("raise ... from e"), is the user's
    try:
        try:
            raise SeqlmError("model.cell='lstmm' is not one of rnn, lstm, gru")
        except SeqlmError as inner:
            raise RuntimeError("Error in call to target 'RecurrentLM'") from inner
    except RuntimeError as e:
        assert str(user_error(e)).startswith("model.cell='lstmm'")
    e = OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.json")
    assert str(user_error(e)) == "/runs/x/metrics.json: no space left on the device"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(tmp_path):
    r = seqlm(
        "train",
        *SMALL_AGREEMENT,
        *TINY_TRAIN,
        "+callbacks.boom._target_=boom_callback.Boom",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert r.returncode != 0
    assert "please report it" in r.stderr and "KeyError" in r.stderr
    assert "seqlm: error:" not in r.stderr  # not dressed as a user's mistake
    r = seqlm("score", "ckpt=/nonexistent-run", "input=s.txt", cwd=tmp_path)
    assert r.returncode == 2 and "seqlm: error: ckpt='/nonexistent-run'" in r.stderr
    assert "please report it" not in r.stderr


def test_adding_a_key_that_exists_says_what_plus_means():
    with pytest.raises(SeqlmError, match=r"\+trainer.max_steps: the key exists already; '\+' only"):
        checked("train", ["+trainer.max_steps=60"])


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gru")
    train(make_config("train", ["model=gru", *SMALL_AGREEMENT, *TINY_TRAIN]), run_dir=out)
    return out


def test_a_checkpoint_that_does_not_load_says_what_failed(gru_run, tmp_path):
    ckpt = torch.load(gru_run / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.endswith("decoder.weight"))
    ckpt["state_dict"][name] = ckpt["state_dict"][name][:-1]  # one row short
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(SeqlmError, match=r"not a seqlm checkpoint \(RuntimeError: .*size mismatch"):
        load_scorer(tmp_path / "bad.ckpt")


def test_an_old_checkpoint_loads_as_it_was_whatever_todays_presets_say(
    gru_run, tmp_path, monkeypatch
):
    import seqlm.conf

    ckpt = torch.load(gru_run / "checkpoints" / "last.ckpt", weights_only=True)
    for key in ("softmax", "cutoffs", "div_value", "dropoute", "wdrop", "alpha"):
        del ckpt["hyper_parameters"]["model"][key]
    torch.save(ckpt, tmp_path / "old.ckpt")
    # the presets are not read: a checkpoint carries its options, or the recorded old values
    monkeypatch.setattr(seqlm.conf, "CONF_DIR", tmp_path / "no-presets-here")
    old = load_scorer(tmp_path / "old.ckpt")
    assert old.net.adaptive is None and old.net.dropoute == 0.0
    ids = np.asarray(old.vocab.encode(["the", "dogs", "run", "<eos>"]))
    np.testing.assert_array_equal(old.token_logprobs(ids), load_scorer(gru_run).token_logprobs(ids))
    # an option no version recorded a value for cannot be made up
    del ckpt["hyper_parameters"]["model"]["hidden_size"]
    torch.save(ckpt, tmp_path / "older.ckpt")
    with pytest.raises(SeqlmError, match="lacks hidden_size"):
        load_scorer(tmp_path / "older.ckpt")


def test_rescore_finds_the_runs_figures_from_a_checkpoint_path(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"test/ppl": 12.5, "val/ppl": 13.0, "x": 1}))
    want = {"test/ppl": 12.5, "val/ppl": 13.0}
    assert lm_figures(str(run)) == want
    assert lm_figures(str(run / "checkpoints" / "best.ckpt")) == want


def test_mix_refuses_a_token_no_component_can_give_a_probability():
    data = SimpleNamespace(
        ids={"valid": np.array([5, 6, 7])}, vocab=SimpleNamespace(itos=list("abcdefgh"))
    )
    fine = np.log(np.array([[0.1, 0.2, 0.3], [0.2, 0.1, 0.3]]))
    check_mixable(fine, "valid", ["A", "B"], data)
    one_zero = fine.copy()
    one_zero[0, 1] = -np.inf  # one component has 0: the other still gives it mass
    check_mixable(one_zero, "valid", ["A", "B"], data)
    both = one_zero.copy()
    both[1, 1] = -np.inf
    with pytest.raises(
        SeqlmError, match=r"mix: token 1 of the valid split \('g'\) has probability 0"
    ):
        check_mixable(both, "valid", ["A", "B"], data)


def test_a_checkpoint_records_its_versions_and_a_difference_is_noted(gru_run, tmp_path, capsys):
    from seqlm.scorers.network import versions_note
    from seqlm.training.module import versions

    ckpt = torch.load(gru_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["seqlm"]["versions"] == versions()
    assert versions_note(ckpt["seqlm"]["versions"]) == ""
    ckpt["seqlm"]["versions"]["torch"] = "2.12.0"
    torch.save(ckpt, tmp_path / "older.ckpt")
    load_scorer(tmp_path / "older.ckpt")
    note = capsys.readouterr().err.strip()
    assert note.endswith(f"was written with torch 2.12.0 (now {torch.__version__})")
    assert note.startswith("seqlm: note: ckpt=") and "\n" not in note
