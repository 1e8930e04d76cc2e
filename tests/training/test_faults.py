"""Faults a user meets on a bad day: a full disk, a kill during a write, Ctrl-C and SIGTERM, two
runs in one folder, read-only places. Each must give one line naming the file and leave every
earlier file whole. The full and read-only disks are real small file systems (tmpfs) where
this process may mount one; the failure points of a write are also injected."""

from __future__ import annotations

import errno
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
from conftest import HELPERS, RESUMABLE, SMALL_AGREEMENT, TINY_TRAIN, seqlm, shared

from ngram import NgramLM
from seqlm.errors import SeqlmError
from seqlm.files import write_text, written


# -- small real file systems ------------------------------------------------------------------
@pytest.fixture
def disk(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards; skipped where this process may not mount."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Take every free byte of ``disk`` but ``leave``."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    if leave:
        size = (disk / "filler").stat().st_size
        os.truncate(disk / "filler", max(0, size - leave))


def read_only(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    """The one error line, the last of stderr (Lightning's notices may come before it)."""
    lines = r.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("seqlm: error: ")]
    assert r.returncode == 2 and errors == lines[-1:], r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return lines[-1]


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*tmp*")], list(folder.rglob(".*tmp*"))


# -- one write -----------------------------------------------------------------------------
def test_a_full_disk_keeps_the_earlier_file_whole(disk):
    path = write_text(disk / "metrics.json", '{"old": 1}\n')
    fill(disk)
    with pytest.raises(SeqlmError) as e:
        write_text(path, "x" * 100_000)
    assert str(e.value) == (
        f"{path}: cannot write it (no space left on the device); any earlier version is unchanged"
    )
    assert path.read_text() == '{"old": 1}\n'
    no_temporaries(disk)


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_a_write_failing_at_any_point_leaves_the_earlier_file(tmp_path, monkeypatch, where):
    import ngram.files

    path = write_text(tmp_path / "vocab.json", "old\n")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where != "write":
        monkeypatch.setattr(ngram.files.os, "fsync" if where == "fsync" else "replace", no_space)
    with (
        pytest.raises(SeqlmError, match="vocab.json: cannot write it .no space left"),
        written(path) as tmp,
    ):
        tmp.write_text("new, half")
        if where == "write":
            no_space()
    assert path.read_text() == "old\n"
    no_temporaries(tmp_path)


# -- whole commands on a full or read-only disk --------------------------------------------------
def test_an_ngram_rerun_on_a_full_disk_is_one_line_and_keeps_the_model(disk):
    run = disk / "run"
    args = ["train", "model=kn2", *SMALL_AGREEMENT, "logger=none", f"hydra.run.dir={run}"]
    assert seqlm(*args, cwd=disk).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    fill(disk)
    line = one_error_line(seqlm(*args, "model.order=3", cwd=disk))
    assert line.startswith(f"seqlm: error: {run}/") and "(no space left on the device)" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert NgramLM.load(run / "model.npz").order == 2
    no_temporaries(run)


def test_a_checkpoint_that_does_not_fit_is_one_line_and_no_checkpoint(disk):
    run = disk / "run"
    fill(disk, leave=48 * 1024)  # the config and vocabulary fit, a checkpoint does not
    r = seqlm(
        "train", "model=lstm", *SMALL_AGREEMENT, *TINY_TRAIN, f"hydra.run.dir={run}", cwd=disk
    )
    line = one_error_line(r)
    assert (
        "/checkpoints/" in line and ".ckpt: cannot write it (no space left on the device)" in line
    )
    assert not list(run.rglob("*.ckpt"))
    no_temporaries(run)


def test_read_only_places_are_one_line_naming_them(disk, tmp_path):
    (disk / "cache").mkdir()
    read_only(disk)
    r = seqlm("train", "model=kn2", *SMALL_AGREEMENT, "logger=none", f"hydra.run.dir={disk}/run",
              cwd=tmp_path)  # fmt: skip
    assert one_error_line(r) == (
        f"seqlm: error: {disk}/run: cannot write the run directory (the file system is read-only)"
    )
    env = {**os.environ, "SEQLM_DATA": str(disk / "cache")}
    r = seqlm("train", "model=kn2", *SMALL_AGREEMENT, "logger=none", "hydra.run.dir=run",
              cwd=tmp_path, env=env)  # fmt: skip
    line = one_error_line(r)
    assert line.startswith(f"seqlm: error: {disk}/cache/ids/") and line.endswith(
        "cannot write the id cache (the file system is read-only)"
    )


# -- kills during a write --------------------------------------------------------------------
def test_a_kill_during_the_arpa_write_leaves_no_arpa_file_and_a_rerun_writes_it(tmp_path):
    run = tmp_path / "run"
    args = ["train", "model=kn3", "data=ptb", f"data.root={shared('ptb')}", "logger=none"]
    args.append(f"hydra.run.dir={run}")
    proc = subprocess.Popen([sys.executable, "-m", "seqlm", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(run.glob(".model.tmp-*.arpa")):
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    assert list(run.glob(".model.tmp-*.arpa")), "the ARPA file was never being written"
    assert not (run / "model.arpa").exists()
    r = seqlm(*args, cwd=tmp_path)  # the kill left the run's lock: taken over, with a note
    assert r.returncode == 0, r.stderr[-3000:]
    assert "taking over the lock of a run that is gone" in r.stdout
    assert (run / "model.arpa").stat().st_size > 1_000_000 and not (run / ".lock").exists()


# -- Ctrl-C and SIGTERM ----------------------------------------------------------------------
def start(
    tmp_path: Path, args: list[str], env=None, hold: Path | None = None, hold_at: int = 0
) -> tuple[subprocess.Popen, Path]:
    """``train ARGS`` in the background, slowed by the trace callback (held before each window
    from step ``hold_at`` on while ``hold`` exists); (process, trace)."""
    trace = tmp_path / "trace"
    callback = ["+callbacks.trace._target_=trace_callback.Trace", f"+callbacks.trace.path={trace}",
                "+callbacks.trace.sleep_s=0.02"]  # fmt: skip
    if hold is not None:
        callback += [f"+callbacks.trace.hold={hold}", f"+callbacks.trace.hold_at={hold_at}"]
    env = {**(env or os.environ), "PYTHONPATH": str(HELPERS)}
    proc = subprocess.Popen([sys.executable, "-m", "seqlm", "train", *args, *callback],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    return proc, trace


def wait_for_steps(trace: Path, steps: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = trace.with_name(trace.name + ".0")
        if rows.exists() and len(rows.read_text().splitlines()) >= steps:
            return
        time.sleep(0.02)
    raise AssertionError("training did not reach the step")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_cleanly_and_resume_continues_exactly(tmp_path, sig, code):
    from wandb_files import read_wandb_run

    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["WANDB_MODE"] = "offline"
    proc, trace = start(tmp_path, [*RESUMABLE, "logger=wandb", f"hydra.run.dir={run}"], env)
    wait_for_steps(trace, 190)  # in the second epoch (150 windows an epoch)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "interrupted" and m["interrupted/signal"] == signal.Signals(sig).name
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == m["train/steps"] > 150
    assert read_wandb_run(run)["exit_code"] == 1  # the W&B run was finished, not left open
    assert not (run / ".lock").exists()

    r = seqlm("train", f"resume={run}", "logger=none", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    plain = tmp_path / "plain"
    r = seqlm("train", *RESUMABLE, "logger=none", f"hydra.run.dir={plain}", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((run / "metrics.json").read_text())
    b = json.loads((plain / "metrics.json").read_text())
    assert a["train/steps"] == b["train/steps"] == 300
    assert a["val/ppl"] == pytest.approx(b["val/ppl"], rel=1e-9)  # stopped at a step boundary


# -- two runs, one folder --------------------------------------------------------------------
def test_a_live_run_directory_is_refused_and_a_dead_runs_lock_taken_over(tmp_path):
    run, hold = tmp_path / "run", tmp_path / "hold"
    hold.touch()  # the run waits after its step-5 checkpoint: it cannot finish while others try
    args = [*RESUMABLE, "logger=none", "checkpoint.every_n_steps=5", f"hydra.run.dir={run}"]
    proc, trace = start(tmp_path, args, hold=hold, hold_at=5)
    wait_for_steps(trace, 6)
    owner = int((run / ".lock").read_text())
    assert owner == proc.pid
    for args in ([*RESUMABLE, "logger=none", f"hydra.run.dir={run}"], [f"resume={run}"]):
        line = one_error_line(seqlm("train", *args, cwd=tmp_path))
        assert line == (
            f"seqlm: error: {run}: in use by a running seqlm (pid {owner}); wait for it, or stop "
            f"it first (its lock: {run / '.lock'})"
        )
    assert proc.poll() is None
    proc.kill()
    proc.wait()
    hold.unlink()  # the resumed run reads the same callback
    assert (run / ".lock").exists()  # a SIGKILL leaves it: stale
    r = seqlm("train", f"resume={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "taking over the lock of a run that is gone" in r.stdout
    assert not (run / ".lock").exists()


def test_spilled_counts_on_a_full_or_read_only_tmpdir_are_one_line(disk, monkeypatch):
    from ngram import NgramError, counting

    ids = np.random.default_rng(0).integers(2, 3000, 200_000).astype(np.int32)
    ids[::20] = 1  # lines
    itos = ["<unk>", "<eos>", *(f"w{i}" for i in range(2, 3000))]
    monkeypatch.setenv("TMPDIR", str(disk))
    fill(disk, leave=8 * 1024)
    with pytest.raises(NgramError, match=rf"^{disk}: cannot spill n-gram counts there \(no space"):
        NgramLM.fit_ids(ids, itos, 3, "kn", max_memory=counting.MIN_BUDGET, discount=0.5)
    (disk / "filler").unlink()
    read_only(disk)
    with pytest.raises(
        NgramError, match=rf"^{disk}: cannot spill .* \(the file system is read-only"
    ):
        NgramLM.fit_ids(ids, itos, 3, "kn", max_memory=counting.MIN_BUDGET, discount=0.5)
