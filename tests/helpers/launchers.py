"""The three ways a user starts a DDP run on one machine, as argv prefixes before ``train``:
the console script, the module, and torchrun with two processes."""

import sys
from pathlib import Path

BIN = Path(sys.executable).parent
LAUNCHERS = {
    "console script": [str(BIN / "seqlm")],
    "python -m": [sys.executable, "-m", "seqlm"],
    "torchrun": [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port of its own, as a user on one machine runs it
        "--nproc_per_node=2",
        "-m",
        "seqlm",
    ],
}
