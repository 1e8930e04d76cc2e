"""Counting a modified Kneser-Ney n-gram (order 3 unless ``--order``) at 30M and 100M tokens:
wall time and peak memory of the whole ``python -m seqlm train model=kn3 data=text`` process.

    python benchmarks/ngram_scale.py --wt2 ../shared/data/wikitext-2 --tokens 30M 100M \\
        [--order 5] [--work /tmp/ngram-scale] [--rounds 1] [-- extra overrides]

The corpus: WikiText-2's training lines,
repeated until the size is reached, with 15% of the words of every copy resampled uniformly
from 42,000 made-up words (so the vocabulary is ~75k and every copy adds new n-grams). It is
written once to ``--work`` and reused. Each round runs the whole command (reading and
tokenizing the text, counting, smoothing, scoring valid and test, writing model.npz and
model.arpa) in a fresh process with the ids cache off, as a first run is; the figures are its
wall time, its peak resident memory (``ru_maxrss`` of that child, from ``os.wait4``), and the
fit time the run itself reports (``time/train_s``: tokenizing included).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

POOL, RESAMPLE, SEED = 42_000, 0.15, 0


def size(text: str) -> int:
    text = text.upper()
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1], 1)
    return int(float(text.rstrip("KMG")) * scale)


def make_corpus(wt2: Path, tokens: int, path: Path) -> None:
    """WikiText-2 train lines, copied with 15% of words resampled, to ``tokens`` tokens."""
    with gzip.open(wt2 / "wiki.train.tokens.gz", "rt", encoding="utf-8") as f:
        lines = [ln.split() for ln in f]
    itos = sorted({w for ln in lines for w in ln})
    stoi = {w: i for i, w in enumerate(itos)}
    words = np.asarray(itos + [f"x{i:05d}" for i in range(POOL)], dtype=object)
    ids = np.asarray([stoi[w] for ln in lines for w in ln], dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum([len(ln) for ln in lines])])
    rng = np.random.default_rng(SEED)
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        while written < tokens:
            copy = ids.copy()
            hit = rng.random(len(copy)) < RESAMPLE
            copy[hit] = len(itos) + rng.integers(0, POOL, int(hit.sum()))
            text = words[copy]
            for a, b in zip(bounds[:-1], bounds[1:]):
                out.write(" ".join(text[a:b]) + "\n")
                written += b - a
                if written >= tokens:
                    break
    tmp.replace(path)


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident GB) of one whole process."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return wall, usage.ru_maxrss * 1024 / 1e9


def run_once(corpus: Path, run_dir: Path, overrides: list[str], order: int = 3) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "seqlm",
        "train",
        "model=kn3",
        f"model.order={order}",
        "data=text",
        f"data.path={corpus}",
        "data.use_cache=false",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    wall, peak = measure(cmd)
    m = json.loads((run_dir / "metrics.json").read_text())
    files = {p.name: p.stat().st_size for p in run_dir.glob("model.*")}
    return {
        "wall_s": wall,
        "peak_gb": peak,
        "fit_s": m["time/train_s"],
        "train_tokens": m["data/train_tokens"],
        "ngrams": m["model/ngrams"],
        "test_ppl": m["test/ppl"],
        "files_mb": {k: round(v / 1e6) for k, v in files.items()},
    }


def eval_once(run_dir: Path) -> dict:
    """``seqlm eval`` of the fitted run: the text is read and tokenized again, the model
    memory-mapped, valid and test scored."""
    wall, peak = measure([sys.executable, "-m", "seqlm", "eval", f"ckpt={run_dir}"])
    return {"eval_wall_s": wall, "eval_peak_gb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wt2", required=True, type=Path, help="folder with wiki.train.tokens.gz")
    ap.add_argument("--tokens", nargs="+", default=["30M", "100M"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/ngram-scale"))
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--eval", action="store_true", help="also time `seqlm eval` of each run")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.max_memory=1G")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    for text in args.tokens:
        corpus = args.work / f"corpus-{text}.txt"
        if not corpus.exists():
            t = time.perf_counter()
            make_corpus(args.wt2, size(text), corpus)
            mb = corpus.stat().st_size / 1e6
            print(f"made {corpus} ({mb:.0f} MB) in {time.perf_counter() - t:.0f} s")
        runs = []
        for r in range(args.rounds):
            run_dir = args.work / f"run-{text}-o{args.order}-{r}"
            shutil.rmtree(run_dir, ignore_errors=True)  # no file of an earlier round counts
            runs.append(run_once(corpus, run_dir, args.overrides, args.order))
            if args.eval:
                runs[-1].update(eval_once(run_dir))
            print(json.dumps({"tokens": text, "order": args.order, **runs[-1]}))
        wall = statistics.median(r["wall_s"] for r in runs)
        fit = statistics.median(r["fit_s"] for r in runs)
        peak = max(r["peak_gb"] for r in runs)
        print(f"{text}: wall {wall:.0f} s, fit {fit:.0f} s, peak RSS {peak:.2f} GB (max)")


if __name__ == "__main__":
    main()
