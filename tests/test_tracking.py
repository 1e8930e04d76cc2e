"""Experiment tracking: W&B offline without a network or key, read back from W&B's own files;
one group per multirun; and ``compare`` on real runs."""

from __future__ import annotations

import csv
import json
import os
import socket

import pytest
import yaml
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, seqlm
from wandb_files import read_wandb_run

from seqlm.commands.compare import COLUMNS
from seqlm.commands.train import train
from seqlm.tracking import PROBE_S, wandb_mode

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


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in (("kn3", []), ("lstm", ["model.hidden_size=16", "trainer.max_epochs=2"])):
        cfg = make_config(
            "train", [f"model={name}", *SMALL_AGREEMENT, *TRAINER_ONLY, "logger=none", *extra]
        )
        train(cfg, run_dir=base / name)
        out[name] = base / name
    return base, out


def test_compare_writes_the_runs_numbers_and_plots(two_runs):
    base, runs = two_runs
    r = seqlm("compare", str(runs["kn3"]), str(runs["lstm"]), "out=cmp", cwd=base)
    assert r.returncode == 0, r.stderr[-2000:]
    with (base / "cmp" / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["run"] for row in rows] == ["kn3", "lstm"]
    assert list(rows[0]) == [k for k, _ in COLUMNS]
    for row, name in zip(rows, ("kn3", "lstm")):
        m = json.loads((runs[name] / "metrics.json").read_text())
        for col, key in (
            ("val_ppl", "val/ppl"),
            ("test_ppl", "test/ppl"),
            ("test_bits", "test/bits"),
        ):
            assert float(row[col]) == pytest.approx(m[key], rel=1e-12)
        size = m["model/ngrams"] if name == "kn3" else m["model/params"]
        assert int(row["size"]) == size
    assert rows[0]["model"] == "3-gram" and rows[1]["model"] == "lstm"
    md = (base / "cmp" / "comparison.md").read_text()
    assert f"{json.loads((runs['lstm'] / 'metrics.json').read_text())['test/ppl']:.2f}" in md
    for png in ("val_ppl.png", "test_ppl.png"):
        data = (base / "cmp" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # the same table in the W&B `comparison` run (offline here), read from its files
    [table] = (base / "cmp" / "wandb").glob("offline-run-*/files/media/table/comparison*.json")
    logged = json.loads(table.read_text())
    assert logged["columns"] == [k for k, _ in COLUMNS]
    for got, row in zip(logged["data"], rows):
        assert got[0] == row["run"] and got[7] == pytest.approx(float(row["test_ppl"]))


def test_compare_refuses_runs_on_another_vocabulary(two_runs, tmp_path):
    base, runs = two_runs
    other = tmp_path / "other"
    cfg = make_config("train", ["model=kn2", *SMALL_AGREEMENT, "logger=none", "data.max_size=20"])
    train(cfg, run_dir=other)
    r = seqlm("compare", str(runs["kn3"]), str(other), cwd=tmp_path)
    assert r.returncode == 2
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"seqlm: error: {other}") and "different vocabulary" in line
    assert not (tmp_path / "comparison").exists()


def test_compare_puts_pseudo_ppl_in_its_own_column(two_runs, tmp_path):
    base, runs = two_runs
    cfg = make_config("train", ["model=birnn", *SMALL_AGREEMENT, *TINY_TRAIN])
    train(cfg, run_dir=tmp_path / "birnn")
    r = seqlm("compare", str(runs["lstm"]), str(tmp_path / "birnn"), "out=c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    with (tmp_path / "c" / "comparison.csv").open() as f:
        lstm, birnn = csv.DictReader(f)
    assert birnn["test_ppl"] == "" and float(birnn["test_pseudo_ppl"]) > 1
    assert lstm["test_pseudo_ppl"] == "" and float(lstm["test_ppl"]) > 1
