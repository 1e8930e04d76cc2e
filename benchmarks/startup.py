"""What a user waits for before a command does anything: help pages and an n-gram's commands,
each a whole ``python -m seqlm`` process (the median of ``--rounds``, after one warm-up run
that fills the OS's file cache).

    python benchmarks/startup.py --kn3 KN3_RUN [--rounds 5] [--work /tmp/startup]

``KN3_RUN`` is an n-gram run directory (``train model=kn3 data=ptb``), whose data's id cache
exists (the run made it). ``score`` reads a 2-line file; ``rescore`` 4 utterances of 25
hypotheses; ``eval`` scores PTB's valid and test splits (165k tokens), so its figure includes
that work.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOALS = {"help": 1.0, "ngram": 2.0}


def wall(cmd: list[str], cwd: Path, until: str | None = None) -> float:
    """Seconds of the whole process; with ``until``, until a line of its standard output
    holds that text (what the user waits for before the result shows; the process then runs
    to its end, not counted)."""
    start = time.perf_counter()
    if until is None:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        return time.perf_counter() - start
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    seen = None
    for line in proc.stdout:
        if seen is None and until in line:
            seen = time.perf_counter() - start
    if proc.wait() != 0 or seen is None:
        raise SystemExit(f"{' '.join(cmd)}: failed, or never printed {until!r}")
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kn3", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/startup"))
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / "sentences.txt").write_text("the company said\nthe the the\n")
    words = ["the", "company", "said", "it", "expects", "profits", "to", "rise"]
    with (work / "nbest.tsv").open("w") as nb, (work / "refs.tsv").open("w") as rf:
        for u in range(4):
            rf.write(f"u{u}\t{' '.join(words)}\n")
            for h in range(25):
                nb.write(f"u{u}\t{-h * 0.1:.2f}\t{' '.join(words[: 3 + h % 6])}\n")
    run = str(args.kn3.resolve())
    seqlm = [sys.executable, "-m", "seqlm"]
    rescore = [*seqlm, "rescore", f"ckpt={run}", "nbest=nbest.tsv", "refs=refs.tsv", "dev=0.5"]
    cases = [
        ("help", "`python -m seqlm --help`", [*seqlm, "--help"]),
        ("help", "`python -m seqlm eval --help`", [*seqlm, "eval", "--help"]),
        (
            "ngram",
            "`score` of kn3, 2 lines",
            [*seqlm, "score", f"ckpt={run}", "input=sentences.txt"],
        ),
        ("ngram", "`eval` of kn3 (valid and test scored)", [*seqlm, "eval", f"ckpt={run}"]),
        (
            "ngram",
            "`rescore` with kn3, `logger=none`",
            [*rescore, "logger=none", "hydra.run.dir=r1"],
        ),
        (
            "ngram",
            "`rescore` with kn3, the default W&B logger (offline)",
            [*rescore, "hydra.run.dir=r2"],
        ),
        (
            "ngram",
            "the same, until its WER table is printed",
            [*rescore, "hydra.run.dir=r3"],
            "first pass",
        ),
    ]
    print("| command | median | min | max | goal | met? |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for kind, name, cmd, *until in cases:
        wall(cmd, work, *until)  # warm-up
        times = [wall(cmd, work, *until) for _ in range(args.rounds)]
        med = statistics.median(times)
        goal = GOALS[kind]
        print(
            f"| {name} | {med:.2f} s | {min(times):.2f} s | {max(times):.2f} s | <= {goal:g} s | "
            f"{'yes' if med <= goal else 'no'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
