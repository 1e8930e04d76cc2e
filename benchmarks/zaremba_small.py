"""Reproduce Zaremba et al. (2014)'s "small" PTB LSTM (paper: test ppl 114.5) through the CLI.

    python benchmarks/zaremba_small.py --ptb ../shared/data/ptb [--out runs/zaremba]

Runs ``python -m seqlm train experiment=zaremba_small`` and prints test ppl, epochs, wall time
and training tokens/s (train tokens x epochs / training wall time).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptb", required=True, help="folder with ptb.{train,valid,test}.txt[.gz]")
    ap.add_argument("--out", default="runs/zaremba_small", help="run directory")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = ap.parse_args()
    start = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "seqlm",
        "train",
        "experiment=zaremba_small",
        f"data.root={args.ptb}",
        f"hydra.run.dir={args.out}",
        *args.overrides,
    ]
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    m = json.loads((Path(args.out) / "metrics.json").read_text())
    tok_s = m["data/train_tokens"] * m["train/epochs"] / m["time/train_s"]
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "test/ppl": round(m["test/ppl"], 2),
                "val/ppl": round(m["val/ppl"], 2),
                "epochs": m["train/epochs"],
                "wall_s": round(wall, 1),
                "train_tokens_per_s": round(tok_s),
                "paper_test_ppl": 114.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
