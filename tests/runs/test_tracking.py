"""Experiment tracking: W&B offline without a network or key, read back from W&B's own files;
one group per multirun. ``compare`` is tested in test_compare.py."""

from __future__ import annotations

import json
import os
import socket

import pytest
import yaml
from conftest import TINY_TRAIN, seqlm
from wandb_files import read_wandb_run

from seqlm.runs.tracking import PROBE_S, wandb_mode

SMALL = ["data.sizes=[3000,800,800]", "data.batch_size=8", "data.bptt=20"]
FAST = [t for t in TINY_TRAIN if not t.startswith("logger=")]
TRAINER_ONLY = [t for t in TINY_TRAIN if t.startswith("trainer.")]  # fits n-gram runs too


def test_train_goes_offline_without_key_and_wandb_files_hold_the_metrics(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"))
    r = seqlm(
        "train",
        "model=lstm",
        *SMALL,
        *FAST,
        "trainer.log_every_n_steps=1",
        "hydra.run.dir=run",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "run"
    [line] = [x for x in r.stdout.splitlines() if x.startswith("W&B offline run:")]
    assert "wandb sync" in line and str(run / "wandb") in line
    metrics = json.loads((run / "metrics.json").read_text())
    logged = read_wandb_run(run)
    assert logged["summary"]["test/ppl"] == pytest.approx(metrics["test/ppl"], rel=1e-12)
    assert logged["summary"]["val/ppl"] == pytest.approx(metrics["val/ppl"], rel=1e-12)
    assert logged["summary"]["data/vocab_hash"] == metrics["data/vocab_hash"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("model", "data", "optim", "trainer", "seed"):
        assert logged["config"][key] == saved[key]
    # per-step and per-epoch keys made it into the history
    keys = set().union(*logged["history"])
    assert {"train/loss", "train/lr", "train/grad_norm", "val/ppl", "time/epoch_s"} <= keys
    # the built-in corpus: agreement by distance as a W&B table (stored as nested keys)
    assert "test/agreement_table/_type" in keys and "test/agreement_chart_table/_type" in keys


def test_wandb_mode_rules(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"  # the user's choice wins
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"  # no key: never probed
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with socket.socket() as server:  # a service that answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert wandb_mode() == "online"
    # the same port, closed now: offline; the probe never waits longer than PROBE_S
    timeouts = []
    real = socket.create_connection

    def probe(address, timeout):
        timeouts.append(timeout)
        return real(address, timeout)

    monkeypatch.setattr(socket, "create_connection", probe)
    assert wandb_mode() == "offline"
    assert timeouts == [PROBE_S]


def test_multirun_runs_every_model_in_one_wandb_group(tmp_path):
    r = seqlm(
        "train",
        "-m",
        "model=kn3,lstm",
        *SMALL,
        *TRAINER_ONLY,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    runs = sorted(p.parent for p in (tmp_path / "sweep").glob("*/metrics.json"))
    assert [p.name for p in runs] == ["0_kn3", "1_lstm"]  # a sweep over both families
    groups = {read_wandb_run(p)["group"] for p in runs}
    assert len(groups) == 1 and groups.pop().startswith("sweep-")


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path):
    """``train resume=RUN`` logs to the W&B run the run directory already holds (one id, one
    offline folder per session), and the upload line names every session."""
    import shutil

    # no WANDB_* at all: an earlier in-process W&B run of the suite leaves WANDB_SERVICE set, and
    # a child would hand its records to that process's service instead of writing its own
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"))
    first = seqlm("train", "model=gru", *SMALL, *FAST, "hydra.run.dir=run", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    r = seqlm("train", "resume=run", "trainer.max_epochs=2", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    folders = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    ids = {f.name.rsplit("-", 1)[1] for f in folders}
    assert len(folders) == 2 and len(ids) == 1
    [line] = [x for x in r.stdout.splitlines() if x.startswith("W&B offline run")]
    assert "2 sessions" in line and f"offline-run-*-{ids.pop()}" in line
    second = tmp_path / "second"  # the resumed session's folder, read on its own
    shutil.copytree(folders[1], second / "wandb" / folders[1].name)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train/epochs"] == 2
    logged = read_wandb_run(second)
    assert logged["summary"]["test/ppl"] == pytest.approx(metrics["test/ppl"], rel=1e-12)
