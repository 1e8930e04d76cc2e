"""DDP from every launcher a user has: the console script, ``python -m seqlm`` and torchrun, each
a 2-process ``ddp_cpu`` run to its end, with one run directory and nothing on stderr but
Lightning's progress lines; and the settings DDP refuses in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import HELPERS
from launchers import LAUNCHERS

TINY_DDP = [
    "train",
    "trainer=ddp_cpu",
    "trainer.devices=2",
    "data.sizes=[3000,600,600]",
    "model.hidden_size=8",
    "model.emb_size=8",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
]
# what Lightning and torchrun say of a run that goes well: the devices, the process group,
# the checkpoint it tests, and torchrun's note on OMP_NUM_THREADS
PROGRESS = re.compile(
    r"^(GPU available|TPU available|Initializing distributed|distributed_backend|"
    r"All distributed processes|-+$|`Trainer.fit` stopped|Restoring states|Loaded model weights|"
    r"W\d+ [\d:.]+ \d+ torch/distributed/run.py|\*+$|Setting OMP_NUM_THREADS|$)"
)


def launch(argv: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """A command as a user types it: warnings shown (no PYTHONWARNINGS)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(HELPERS), env.get("PYTHONPATH", "")])
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_ddp_launches_to_the_end_and_prints_only_progress(tmp_path, launcher):
    if launcher == "console script" and not Path(LAUNCHERS[launcher][0]).exists():
        pytest.fail(f"no console script {LAUNCHERS[launcher][0]}: install the package (pip -e .)")
    r = launch([*LAUNCHERS[launcher], *TINY_DDP], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs  # torchrun's rank 1 leaves no second run directory
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["train/world_size"] == 2 and metrics["test/tokens"] > 0
    assert metrics["train/precision"] == "32-true" and metrics["eval/precision"] == "32-true"
    noise = [line for line in (r.stderr + r.stdout).splitlines() if re.search("[Ww]arn", line)]
    assert noise == []
    others = [line for line in r.stderr.splitlines() if not PROGRESS.match(line)]
    assert others == []


def test_an_eval_batch_smaller_than_the_processes_is_refused_in_one_line(tmp_path):
    r = launch([*LAUNCHERS["python -m"], *TINY_DDP, "data.eval_batch_size=1"], tmp_path)
    assert r.returncode == 2
    assert "seqlm: error: data.eval_batch_size=1 is below the 2 processes" in r.stderr
    assert "Traceback" not in r.stderr
