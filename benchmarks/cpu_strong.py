"""The 2-hour CPU recipe on PTB: train ``experiment=cpu_strong`` (or another preset) with
snapshots after 30, 60 and 120 minutes of training, then print the per-validation curve and the
test perplexity of each snapshot and of the best checkpoint.

    python benchmarks/cpu_strong.py --ptb ../shared/data/ptb [--out runs/cpu_strong]
    python benchmarks/cpu_strong.py --ptb ../shared/data/ptb --run runs/cpu_strong  # report only
    python benchmarks/cpu_strong.py --ptb ... --experiment zaremba_small \\
        --out runs/zaremba_2h checkpoint.at_minutes=[30,60,120] +trainer.max_time=00:02:00:00

Every snapshot is scored by ``python -m seqlm eval`` (the same evaluation as training's final
test). The minutes are training time as Lightning's ``max_time`` counts it (from the first step,
validation included; start-up and the final test are not in them).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path


def seqlm(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "seqlm", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptb", required=True, help="folder with ptb.{train,valid,test}.txt[.gz]")
    ap.add_argument("--out", default="runs/cpu_strong", help="run directory")
    ap.add_argument("--run", help="report on this finished run instead of training")
    ap.add_argument("--experiment", default="cpu_strong")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = ap.parse_args()
    run = Path(args.run or args.out)
    if not args.run:
        start = time.perf_counter()
        seqlm(
            "train",
            f"experiment={args.experiment}",
            f"data.root={args.ptb}",
            "logger=csv",
            f"hydra.run.dir={run}",
            *args.overrides,
        )
        print(f"whole process: {time.perf_counter() - start:.0f} s")
    print(f"# {platform.processor() or platform.machine()}, {run}")
    print("\nvalidation after each epoch:")
    print("| epoch | minutes | val ppl |\n| ---: | ---: | ---: |")
    for line in (run / "history.jsonl").read_text().splitlines():
        h = json.loads(line)
        print(f"| {h['epoch'] + 1} | {h['time_s'] / 60:.1f} | {h['val/ppl']:.2f} |")
    print("\ntest perplexity of the snapshots:")
    print("| checkpoint | val ppl | test ppl |\n| --- | ---: | ---: |")
    snapshots = sorted(run.glob("checkpoints/at-*min.ckpt"), key=lambda p: float(p.stem[3:-3]))
    for ckpt in [*snapshots, run / "checkpoints" / "best.ckpt"]:
        out = run / f"eval-{ckpt.stem}.json"
        if not out.exists():
            seqlm("eval", f"ckpt={ckpt}", f"out={out}")  # on the run's own data
        m = json.loads(out.read_text())
        print(f"| {ckpt.name} | {m['val/ppl']:.2f} | {m['test/ppl']:.2f} |")


if __name__ == "__main__":
    main()
