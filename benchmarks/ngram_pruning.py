"""Size against perplexity of pruned modified Kneser-Ney models of PTB: lmplz-style count
pruning and Stolcke's entropy pruning at a few thresholds, orders 3 and 5.

    python benchmarks/ngram_pruning.py [--ptb ../shared/data/ptb] [--out docs/ngram_pruning.md]

Each model is fitted by ``NgramLM.fit`` on PTB's training text (PTB's ``<unk>`` as an ordinary
word, as in the lmplz reference models) and scored on the test text, every line a sentence,
``</s>`` counted (82,430 tokens). The time is the fit's, pruning included, in this process.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from ngram import NgramLM

THRESHOLDS = [1e-9, 1e-8, 3e-8, 1e-7, 3e-7, 1e-6]


def lines(ptb: Path, split: str) -> list[list[str]]:
    with gzip.open(ptb / f"ptb.{split}.txt.gz", "rt") as f:
        return [ln.split() for ln in f]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptb", type=Path, default=Path("../shared/data/ptb"))
    ap.add_argument("--out", type=Path, default=Path("docs/ngram_pruning.md"))
    args = ap.parse_args()
    train, test = lines(args.ptb, "train"), lines(args.ptb, "test")
    rows = []
    for order in (3, 5):
        settings = [
            ("none", {}),
            (f"count {[0] + [1] * (order - 1)}", {"prune": [0] + [1] * (order - 1)}),
        ]
        settings += [(f"entropy {t:g}", {"prune_entropy": t}) for t in THRESHOLDS]
        for name, kw in settings:
            t = time.perf_counter()
            m = NgramLM.fit(train, order, "modified_kn", **kw)
            fit = time.perf_counter() - t
            ids = np.asarray([m.stoi.get(w, 0) for s in test for w in [*s, "</s>"]])
            sizes = [len(k) for k in m.keys]
            rows.append((order, name, sum(sizes), sizes, m.perplexity(ids), fit))
            print(rows[-1], flush=True)
    out = [
        "# Pruned n-grams of PTB: size against perplexity",
        "",
        f"`python benchmarks/ngram_pruning.py` on {date.today()}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores. Modified "
        "Kneser-Ney, PTB train, test perplexity with `</s>` (82,430 tokens). Entropy pruning's "
        "threshold is the relative perplexity increase an n-gram may cost (SRILM's `-prune`).",
        "",
        "| order | pruning | n-grams | by order | test ppl | fit s |",
        "| ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for order, name, total, sizes, ppl, fit in rows:
        by = " / ".join(f"{n:,}" for n in sizes)
        out.append(f"| {order} | {name} | {total:,} | {by} | {ppl:.2f} | {fit:.1f} |")
    args.out.write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
