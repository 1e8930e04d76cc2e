"""DDP on CPU processes (gloo) through the real CLI, and resuming a run killed mid-epoch.

Both go through ``python -m seqlm`` in a subprocess: Lightning re-launches the workers with
the command line (the path a user takes), and SIGKILL needs a process of its own.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import HELPERS, RESUMABLE, preset, seqlm, shared

from seqlm.data.batching import TrainStream


def trace_lines(path: Path) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for f in sorted(path.parent.glob(path.name + ".*")):
        out[int(f.suffix[1:])] = [json.loads(line) for line in f.read_text().splitlines()]
    return out


def trace_args(path: Path, sleep_s: float = 0.0) -> list[str]:
    return [
        "+callbacks.trace._target_=trace_callback.Trace",
        f"+callbacks.trace.path={path}",
        f"+callbacks.trace.sleep_s={sleep_s}",
    ]


# -- DDP -------------------------------------------------------------------------------------
PTB_DDP = [
    "model=lstm",
    "model.emb_size=32",
    "model.hidden_size=32",
    "model.num_layers=1",
    # an adaptive softmax whose last cluster (the 10 rarest words) has no target in most
    # batches: every parameter must still be in each step's graph for DDP
    "model.softmax=adaptive",
    "model.cutoffs=[2000,9990]",
    "data=ptb",
    "data.batch_size=8",
    "data.bptt=20",
    "trainer.max_steps=40",
    "trainer.log_every_n_steps=5",
    "trainer.enable_progress_bar=false",
    "checkpoint.every_n_steps=20",
    "optim.optimizer.lr=0.01",
]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    root = shared("ptb")
    trace = work / "trace"
    r = seqlm(
        "train",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        f"data.root={root}",
        *PTB_DDP,
        "logger=[wandb,csv]",
        *trace_args(trace),
        "hydra.run.dir=run",
        cwd=work,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return work, work / "run", r, trace_lines(trace), root


@pytest.mark.slow
def test_ddp_ranks_train_disjoint_tokens_covering_the_stream(ddp_run):
    _, run, _, traces, root = ddp_run
    assert sorted(traces) == [0, 1]
    windows = {rank: [row["window"] for row in rows] for rank, rows in traces.items()}
    assert windows[0] == windows[1] == list(range(40))  # the same windows, in step
    data = preset("data", "ptb", root=str(root))
    data.prepare()
    ids, eos = data.ids["train"], data.vocab.eos_id
    # the layout computed here, independently of the run: W*B = 16 contiguous streams of L
    length = len(ids) // 16
    stream = np.concatenate([[eos], ids]).astype(np.int64)
    targets = stream[1 : 16 * length + 1].reshape(16, length)
    index = np.arange(16 * length).reshape(16, length)
    assert len(ids) - 16 * length < 16  # the dropped tail
    trained = {}
    for rank, rows in traces.items():
        mine = slice(8 * rank, 8 * rank + 8)
        # what the rank's process trained: rows rB..rB+B-1 at each window's first column
        for row in rows:
            col = row["window"] * 20
            assert row["first_targets"] == targets[mine, col].tolist()
        trained[rank] = {
            int(k) for w in windows[rank] for k in index[mine, w * 20 : w * 20 + 20].flat
        }
    assert not trained[0] & trained[1]
    assert trained[0] | trained[1] == set(index[:, : 40 * 20].flat)  # every row, 40 windows
    # TrainStream lays the streams out the same way (so a whole epoch covers all but the tail)
    for rank in (0, 1):
        s = TrainStream(ids, eos, 8, 20, rank=rank, world_size=2)
        assert np.array_equal(s.targets.numpy(), targets[8 * rank : 8 * rank + 8])
        assert np.array_equal(s.target_index.numpy(), index[8 * rank : 8 * rank + 8])


def test_ddp_ranks_draw_their_own_dropout_masks(ddp_run):
    # seed + rank: the RNG state differs between the ranks at every step (one seed for both
    # would give both ranks the same dropout and weight-drop masks)
    traces = ddp_run[3]
    for row0, row1 in zip(traces[0], traces[1]):
        assert row0["global_step"] == row1["global_step"]
        assert row0["rng"] != row1["rng"]


@pytest.mark.slow
def test_ddp_val_ppl_equals_single_process_eval_of_the_checkpoint(ddp_run):
    work, run, _, _, root = ddp_run
    m = json.loads((run / "metrics.json").read_text())
    assert m["train/world_size"] == 2 and m["train/steps"] == 40
    assert m["val/tokens"] == 73760 and m["test/tokens"] == 82430
    r = seqlm("eval", f"ckpt={run}", f"data.root={root}", "data=ptb", "out=single.json", cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    single = json.loads((work / "single.json").read_text())
    assert single["val/tokens"] == m["val/tokens"]
    assert single["val/ppl"] == pytest.approx(m["val/ppl"], rel=1e-5)
    assert single["test/ppl"] == pytest.approx(m["test/ppl"], rel=1e-5)


@pytest.mark.slow
def test_ddp_loss_falls_and_one_process_writes(ddp_run):
    _, run, r, _, _ = ddp_run
    with (run / "logs" / "metrics.csv").open() as f:
        losses = [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]
    assert len(losses) >= 6
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5  # from ln(10000) = 9.2 down
    assert r.stdout.count("run directory:") == 1  # the summary: rank 0 only
    assert not list(run.rglob("*.tmp"))
    assert len(list(run.glob("wandb/offline-run-*"))) == 1  # one W&B run, not one per rank


# -- resume after SIGKILL --------------------------------------------------------------------
RESUME = [*RESUMABLE, "checkpoint.every_n_steps=5", "logger=none"]


def kill_in_second_epoch(tmp_path: Path, args: list[str], windows: int = 13):
    """Start ``train ARGS`` in the background and SIGKILL it once it has trained ``windows``
    windows of its second epoch; returns (run directory, trace path)."""
    run = tmp_path / "run"
    trace = tmp_path / "trace"
    proc = subprocess.Popen(  # the run seqlm() would start, but in the background
        [sys.executable, "-m", "seqlm", "train", *args, f"hydra.run.dir={run}"]
        + trace_args(trace, sleep_s=0.02),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(HELPERS)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        rows = trace_lines(trace).get(0, [])
        if sum(row["epoch"] == 1 for row in rows) >= windows:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return run, trace


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_continues_with_the_next_window(tmp_path):
    """Killed in the second epoch (the stream must name its epoch, not only its window)."""
    run, trace = kill_in_second_epoch(tmp_path, RESUME)
    last = run / "checkpoints" / "last.ckpt"
    killed = trace_lines(trace)[0]
    per_epoch = sum(row["epoch"] == 0 for row in killed)  # about 150 windows
    assert 13 <= len(killed) - per_epoch < per_epoch  # killed mid-way through epoch 1
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    saved_step = ckpt["global_step"]
    assert saved_step % 5 == 0 and per_epoch < saved_step < len(killed)
    [position] = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert position == {"epoch": 1, "next_window": saved_step - per_epoch}
    opt_state = ckpt["optimizer_states"][0]["state"][0]
    plateau = ckpt["lr_schedulers"][0]  # ReduceLROnPlateau's history travels too
    assert {"best", "num_bad_epochs", "_last_lr"} <= set(plateau)

    for f in trace.parent.glob(trace.name + ".*"):
        f.unlink()
    r = seqlm("train", f"resume={run}", *trace_args(trace), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = trace_lines(trace)[0]
    first = resumed[0]
    # the next window trained is the one after the checkpoint's, in the same epoch ...
    assert (first["epoch"], first["window"]) == (1, position["next_window"])
    # ... which is the one the killed run trained next
    came_next = killed[saved_step]
    assert (came_next["epoch"], came_next["window"]) == (first["epoch"], first["window"])
    assert came_next["first_targets"] == first["first_targets"]
    assert first["global_step"] == saved_step
    assert first["adam_step"] == float(opt_state["step"]) == saved_step
    assert first["exp_avg_sum"] == pytest.approx(float(opt_state["exp_avg"].double().sum()))
    windows = [row["window"] for row in resumed]
    assert windows == list(range(position["next_window"], per_epoch))
    assert json.loads((run / "metrics.json").read_text())["train/steps"] == 2 * per_epoch

    # the resumed run ends where an uninterrupted one does (same RNG, state and stream)
    plain = tmp_path / "plain"
    r = seqlm("train", *RESUME, f"hydra.run.dir={plain}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((run / "metrics.json").read_text())
    b = json.loads((plain / "metrics.json").read_text())
    assert a["train/steps"] == b["train/steps"]
    # dropout draws from the restored RNG: the two runs agree to rounding
    assert a["val/ppl"] == pytest.approx(b["val/ppl"], rel=1e-9)

    # history.jsonl: the same epochs, steps and training tokens as the uninterrupted run's
    def history(d):
        return [
            (h["epoch"], h["step"], h["tokens"])
            for h in map(json.loads, (d / "history.jsonl").read_text().splitlines())
        ]

    assert history(run) == history(plain) and len(history(plain)) == 2
    assert history(plain)[1][2] == 2 * history(plain)[0][2] > 0


RESUME_NT_ASGD = [
    *RESUME,
    "optim=nt_asgd",
    "optim.optimizer.lr=5.0",
    "optim.average_from_start=true",  # averaging from the first step: the kill comes after
    "model.wdrop=0.3",
    "model.dropouth=0.2",
    "model.num_layers=2",
    "data.variable_bptt=true",
]


@pytest.mark.slow
def test_sigkill_while_averaging_then_resume_continues_exactly(tmp_path):
    """NT-ASGD's mean, its step count and the raw weights survive a SIGKILL: the resumed run
    ends with the weights, the mean and the figures of a run never interrupted."""
    run, trace = kill_in_second_epoch(tmp_path, RESUME_NT_ASGD)
    killed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    saved = killed["seqlm"]["averaging"]
    assert saved["steps"] == killed["global_step"] > 0  # averaging since the first step
    [position] = killed["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert position["epoch"] == 1 and position["next_window"] > 0  # killed mid-way, epoch 2
    r = seqlm("train", f"resume={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    plain = tmp_path / "plain"
    r = seqlm("train", *RESUME_NT_ASGD, f"hydra.run.dir={plain}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (
        torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        for d in (run, plain)
    )
    assert a["global_step"] == b["global_step"]
    assert a["seqlm"]["averaging"]["steps"] == b["seqlm"]["averaging"]["steps"] == a["global_step"]
    for key in b["state_dict"]:  # the means (what the checkpoint's weights are)
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=1e-6)
    for x, y in zip(a["seqlm"]["averaging"]["raw"], b["seqlm"]["averaging"]["raw"]):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (run, plain))
    assert ma["val/ppl"] == pytest.approx(mb["val/ppl"], rel=1e-9)


def test_resume_refuses_a_run_dir_without_checkpoints(tmp_path):
    r = seqlm("train", f"resume={tmp_path / 'nothing'}", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("seqlm: error: resume=")


@pytest.mark.slow
def test_resume_refuses_another_model_and_a_missing_checkpoint_file(tmp_path):
    run = tmp_path / "run"
    r = seqlm("train", *RESUME, "trainer.max_steps=3", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for args, message in (
        ([f"resume={run}", "model=gru"], "seqlm: error: resume: model= cannot change"),
        (["ckpt_path=nowhere.ckpt", "logger=none"], "seqlm: error: ckpt_path=nowhere.ckpt"),
    ):
        r = seqlm("train", *args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(message)


def exited(pid: int) -> bool:
    """The process is gone, or a zombie (exited, not yet reaped)."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("dead", [1, 0])
def test_a_dead_ddp_rank_stops_the_other_in_one_line_and_the_run_resumes(tmp_path, dead):
    run, trace = tmp_path / "run", tmp_path / "trace"
    args = ["train", "trainer=ddp_cpu", "trainer.devices=2", *RESUME, f"hydra.run.dir={run}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqlm", *args, *trace_args(trace, sleep_s=0.05)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(HELPERS)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(trace_lines(trace).get(1, [])) < 20:
        time.sleep(0.05)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1  # rank 1, started by rank 0's launcher
    worker = int(children[0])
    os.kill(worker if dead == 1 else proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    _, err = proc.communicate(timeout=120)  # its stderr closes when the worker has exited too
    assert time.monotonic() - killed < 60  # no hang in a collective
    # its stderr closes a moment before the kernel ends its exit (longer on a busy core)
    while not exited(worker) and time.monotonic() - killed < 60:
        time.sleep(0.05)
    assert exited(worker)
    lines = [ln for ln in err.splitlines() if ln.startswith("seqlm: error: ")]
    assert len(lines) == 1, err[-3000:]
    # the survivor's watch (a worker's exit code, or its launcher gone), or its failed collective
    assert lines[0].startswith(f"seqlm: error: rank {dead} of the 2-process run stopped (")
    assert lines[0].endswith(f"resume={run} continues from its last checkpoint")
    assert proc.returncode == (2 if dead == 1 else -signal.SIGKILL)
    r = seqlm("train", f"resume={run}", cwd=tmp_path, timeout=600)  # the same two processes
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["train/world_size"] == 2 and m["train/steps"] == 2 * 75  # two whole epochs
