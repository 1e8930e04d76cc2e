"""The ``ngram`` command beside KenLM's lmplz, query and load, whole processes on one machine in
one sitting: wall time (median of ``--rounds``) and peak resident memory of each.

    python benchmarks/ngram_tool.py --kenlm /path/to/kenlm/build/bin --work /tmp/ngram-tool \\
        [--ptb ../shared/data/ptb] [--big corpus.txt] [--order 5] [--rounds 3] [--dask 2]

- fit: ``ngram fit -o N --text T --arpa A`` against ``lmplz -o N --text T --arpa A`` (its
  default memory, -S 80%), on PTB train and on ``--big`` (e.g. 30M tokens of
  ``benchmarks/ngram_scale.py``'s corpus); the models compared (n-gram counts, test perplexity
  of each by ``ngram ppl``).
- ``seqlm train model=kn5 data=ptb`` with the ARPA written (PTB only).
- load: ``ngram convert A.arpa A.npz`` (reads the ARPA, writes tables) against ``query A.arpa
  < /dev/null`` (KenLM's load into its probing structure, no query).
- score: ``ngram score`` of PTB test against ``query`` of it, both from the ARPA file and both
  from their binary forms (``.npz``; KenLM's ``build_binary`` probing file).
- ARPA writing speed, in the process: ``write_arpa`` of the fitted PTB model, MB/s.
- ``--dask N``: ``ngram fit --dask local:N`` on ``--big`` beside one process (what it sent, each
  worker's peak).

PTB's and WikiText's ``<unk>`` tokens are renamed (``<ptb-unk>``) before either tool reads
them: lmplz refuses ``<unk>`` in its input, and both must count the same text.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(cmd, stdin=None, rounds=1, env=None):
    """Median wall and max peak over ``rounds`` runs, and the last run's output."""
    walls, peaks = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        with open(stdin or os.devnull, "rb") as f:
            child = subprocess.Popen(
                list(map(str, cmd)),
                stdin=f,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            out = child.stdout.read()
            err = child.stderr.read()
            _, status, usage = os.wait4(child.pid, 0)
        walls.append(time.perf_counter() - start)
        peaks.append(usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{err.decode()[-2000:]}")
    return statistics.median(walls), max(peaks), out.decode(), err.decode()


def renamed(src: Path, dst: Path, unk: str) -> Path:
    if not dst.exists():
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rt", encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
            for line in f:
                out.write(line.replace("<unk>", unk))
    return dst


def perplexity(model: Path, text: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "ngram", "ppl", str(model), str(text)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"including OOVs:\t(\S+)", out).group(1))


def arpa_counts(path: Path) -> list[int]:
    counts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"ngram (\d+)=(\d+)", line)
            if m:
                counts.append(int(m.group(2)))
            elif counts and line.startswith("\\1-grams"):
                break
    return counts


def row(what: str, ours: tuple, theirs: tuple | None, goal: str) -> str:
    o = f"{ours[0]:.2f} s, {ours[1]:.0f} MB"
    t = f"{theirs[0]:.2f} s, {theirs[1]:.0f} MB" if theirs else "-"
    ratio = f"{ours[0] / theirs[0]:.2f}x" if theirs else "-"
    return f"| {what} | {o} | {t} | {ratio} | {goal} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--kenlm", type=Path, required=True, help="folder with lmplz, query, build_binary"
    )
    ap.add_argument("--ptb", type=Path, default=HERE.parent.parent / "shared" / "data" / "ptb")
    ap.add_argument("--big", type=Path, help="a large corpus (one sentence a line)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ngram-tool"))
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dask", type=int, default=0, help="local Dask workers to try on --big")
    ap.add_argument("--big-only", action="store_true", help="skip the PTB rows")
    args = ap.parse_args()
    w, o, k = args.work, args.order, args.kenlm
    w.mkdir(parents=True, exist_ok=True)
    ngram = [sys.executable, "-m", "ngram"]
    print(
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; order {o}; median of {args.rounds} rounds"
    )
    print("| what | ngram | KenLM | ratio | goal |\n| --- | --- | --- | --- | --- |")
    if args.big_only:
        return big_rows(args, w, o, k, ngram)
    train = renamed(args.ptb / "ptb.train.txt.gz", w / "ptb.train.txt", "<ptb-unk>")
    test = renamed(args.ptb / "ptb.test.txt.gz", w / "ptb.test.txt", "<ptb-unk>")
    ours = timed(
        [*ngram, "fit", "-o", o, "--text", train, "--arpa", w / "ng.arpa"], rounds=args.rounds
    )
    theirs = timed(
        [k / "lmplz", "-o", o, "--text", train, "--arpa", w / "kenlm.arpa"], rounds=args.rounds
    )
    print(row(f"PTB fit, order {o}, ARPA written (lmplz's default -S 80%)", ours, theirs, "<= 2x"))
    theirs = timed(
        [k / "lmplz", "-o", o, "-S", "2G", "--text", train, "--arpa", w / "kenlm.arpa"],
        rounds=args.rounds,
    )
    print(row(f"PTB fit, order {o}, ARPA written (lmplz -S 2G)", ours, theirs, "<= 2x"))
    same = arpa_counts(w / "ng.arpa") == arpa_counts(w / "kenlm.arpa")
    ppl = perplexity(w / "ng.arpa", test), perplexity(w / "kenlm.arpa", test)
    print(f"| PTB model: same n-gram counts {same}; test ppl {ppl[0]:.4f} / {ppl[1]:.4f} | | | | |")

    env = dict(os.environ, SEQLM_DATA=str(w / "seqlm-data"))
    seqlm = [
        sys.executable,
        "-m",
        "seqlm",
        "train",
        f"model=kn{o}",
        "data=ptb",
        f"data.root={args.ptb}",
        "logger=none",
        "data.use_cache=false",
        f"hydra.run.dir={w / 'seqlm-run'}",
    ]
    print(
        row(
            f"seqlm train model=kn{o} data=ptb",
            timed(seqlm, rounds=args.rounds, env=env),
            None,
            "<= 5 s",
        )
    )

    ours = timed([*ngram, "convert", w / "ng.arpa", w / "ng.npz"], rounds=args.rounds)
    theirs = timed([k / "query", w / "kenlm.arpa"], rounds=args.rounds)
    print(row("ARPA load (ngram convert; query, no input)", ours, theirs, "<= 1.5x"))
    subprocess.run(
        [k / "build_binary", w / "kenlm.arpa", w / "kenlm.bin"], check=True, capture_output=True
    )
    ours = timed([*ngram, "score", w / "ng.arpa"], stdin=test, rounds=args.rounds)
    theirs = timed([k / "query", w / "kenlm.arpa"], stdin=test, rounds=args.rounds)
    print(row("score PTB test from ARPA", ours, theirs, "<= 2x"))
    ours = timed([*ngram, "score", w / "ng.npz"], stdin=test, rounds=args.rounds)
    theirs = timed([k / "query", w / "kenlm.bin"], stdin=test, rounds=args.rounds)
    print(row("score PTB test from binary (.npz; KenLM probing)", ours, theirs, "-"))

    sys.path.insert(0, str(HERE.parent))
    from ngram import NgramLM, write_arpa

    model = NgramLM.load(w / "ng.npz")
    start = time.perf_counter()
    write_arpa(model, w / "again.arpa")
    mb = (w / "again.arpa").stat().st_size / 1e6
    print(
        f"| ARPA writing, in the process | {mb / (time.perf_counter() - start):.0f} MB/s "
        f"({mb:.0f} MB) | | | >= 100 MB/s |"
    )

    if args.big:
        big_rows(args, w, o, k, ngram)


def big_rows(args, w: Path, o: int, k: Path, ngram: list[str]) -> None:
    big = renamed(args.big, w / "big.txt", "<big-unk>")
    with open(big, encoding="utf-8") as f:
        tokens = sum(len(line.split()) + 1 for line in f)
    # the made-up words' counts give order 1 no modified-KN discounts: both fall back
    fb = "--discount_fallback"
    ours = timed([*ngram, "fit", "-o", o, "--text", big, "--arpa", w / "big-ng.arpa", fb])
    theirs = timed([k / "lmplz", "-o", o, "--text", big, "--arpa", w / "big-kenlm.arpa", fb])
    print(
        row(
            f"{tokens / 1e6:.0f}M tokens fit, order {o}, ARPA written",
            ours,
            theirs,
            "<= 1x time and memory",
        )
    )
    same = arpa_counts(w / "big-ng.arpa") == arpa_counts(w / "big-kenlm.arpa")
    print(f"| {tokens / 1e6:.0f}M model: same n-gram counts {same} | | | | |")
    if args.dask:
        one = timed([*ngram, "fit", "-o", o, "--text", big, "--npz", w / "big-1.npz", fb])
        many = timed(
            [
                *ngram,
                "fit",
                "-o",
                o,
                "--text",
                big,
                "--npz",
                w / "big-d.npz",
                "--dask",
                f"local:{args.dask}",
                fb,
            ]
        )
        sent = [ln for ln in many[3].splitlines() if "Dask workers" in ln]
        print(
            f"| {tokens / 1e6:.0f}M fit, .npz only, --dask local:{args.dask} | "
            f"{many[0]:.1f} s, {many[1]:.0f} MB (the client) | one process: {one[0]:.1f} s, "
            f"{one[1]:.0f} MB | {many[0] / one[0]:.2f}x | - |"
        )
        print(f"| {sent[0] if sent else ''} | | | | |")


if __name__ == "__main__":
    main()
