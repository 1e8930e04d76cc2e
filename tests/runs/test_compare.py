"""``compare``: the table, CSV and plots of real runs, vocabulary checks, and the
pseudo-perplexity's own column."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, seqlm

from seqlm.commands.compare import COLUMNS
from seqlm.commands.train import train

SMALL = ["data.sizes=[3000,800,800]", "data.batch_size=8", "data.bptt=20"]
FAST = [t for t in TINY_TRAIN if not t.startswith("logger=")]
TRAINER_ONLY = [t for t in TINY_TRAIN if t.startswith("trainer.")]  # fits n-gram runs too


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
        # the built-in corpus: agreement and the grammar's floor beside the perplexity
        assert float(row["test_agreement"]) == pytest.approx(100 * m["test/agreement"])
        assert float(row["test_ppl_floor"]) == pytest.approx(m["test/ppl_floor"])
    assert rows[0]["model"] == "3-gram" and rows[1]["model"] == "lstm"
    md = (base / "cmp" / "comparison.md").read_text()
    assert "agreement %" in md and "test ppl floor" in md
    assert "test WER %" not in md  # a column no run has a figure in is left out
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


def test_compare_skips_unfinished_runs_says_what_it_cannot_plot_and_takes_logger_none(
    two_runs, tmp_path
):
    base, runs = two_runs
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "config.yaml").write_text("model: {}\n")  # a run that died before metrics.json
    r = seqlm(
        "compare", str(runs["kn3"]), str(runs["lstm"]), str(failed), "logger=none", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-1500:]
    assert f"skipped {failed}: no metrics.json" in r.stdout
    assert f"not in val_ppl.png (no validation in history.jsonl): {runs['kn3'].name}" in r.stdout
    assert (tmp_path / "comparison" / "comparison.md").is_file()
    assert not (tmp_path / "comparison" / "wandb").exists()  # logger=none: no W&B run


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
