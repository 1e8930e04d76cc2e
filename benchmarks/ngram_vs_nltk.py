"""Fit time, test-perplexity time, perplexity and peak memory: ``ngram`` against ``nltk.lm`` on
PTB (orders 2 and 3; Laplace, Witten-Bell, Kneser-Ney).

    python benchmarks/ngram_vs_nltk.py --ptb ../shared/data/ptb [--nltk-slice 300]

Every configuration runs in its own process, so peak RSS (``resource.getrusage``) is its own.
Both libraries see the same sentences; each pads them its own way (ours: one ``<s>`` as KenLM;
nltk: ``padded_everygram_pipeline``, n-1 ``<s>`` and n-1 ``</s>``), so perplexities are close
but not identical. nltk's scoring is timed on the first ``--nltk-slice`` test n-grams and
extrapolated to the whole test set (82,430 tokens): the table says so. Our KN column is
interpolated Kneser-Ney with nltk's discount (0.1) for a like-for-like timing; our
modified-KN (KenLM's estimator) is shown beside it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def load(root: Path, split: str) -> list[list[str]]:
    with gzip.open(root / f"ptb.{split}.txt.gz", "rt") as f:
        return [line.split() for line in f]


def run_ours(root: Path, method: str, order: int, slice_n: int) -> dict:
    import numpy as np

    from ngram import NgramLM

    train, test = load(root, "train"), load(root, "test")
    kwargs = {"kn": {"discount": 0.1}}.get(method, {})
    smoothing = {"laplace": "laplace", "wb": "witten_bell", "kn": "kn", "mkn": "modified_kn"}[
        method
    ]
    t0 = time.perf_counter()
    lm = NgramLM.fit(train, order, smoothing, **kwargs)
    t1 = time.perf_counter()
    stoi = {w: i for i, w in enumerate(lm.itos)}
    ids = np.array([i for s in test for i in [*(stoi.get(w, 0) for w in s), 1]])
    lp = lm.score_ids(ids)
    ppl = math.exp(-lp.mean())
    t2 = time.perf_counter()
    stored = sum(len(k) for k in lm.keys)
    table_bytes = sum(a.nbytes for t in (lm.keys, lm.logp, lm.logbow) for a in t)
    return {
        "fit_s": t1 - t0,
        "score_s": t2 - t1,
        "ppl": ppl,
        "ppl_slice": math.exp(-lp[:slice_n].mean()),
        "ngrams": stored,
        "bytes_per_ngram": table_bytes / stored,
        "scored": len(ids),
        "extrapolated": False,
    }


def run_nltk(root: Path, method: str, order: int, slice_n: int) -> dict:
    from nltk.lm import KneserNeyInterpolated, Laplace, WittenBellInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline
    from nltk.util import everygrams, pad_sequence

    train, test = load(root, "train"), load(root, "test")
    cls = {"laplace": Laplace, "wb": WittenBellInterpolated, "kn": KneserNeyInterpolated}[method]
    t0 = time.perf_counter()
    grams, vocab = padded_everygram_pipeline(order, train)
    lm = cls(order)
    lm.fit(grams, vocab)
    t1 = time.perf_counter()
    # the test n-grams that predict each word and </s>, as lm.perplexity would read them
    test_grams = []
    for s in test:
        padded = list(
            pad_sequence(
                s,
                order,
                pad_left=True,
                pad_right=True,
                left_pad_symbol="<s>",
                right_pad_symbol="</s>",
            )
        )
        test_grams += [
            g
            for g in everygrams(padded, min_len=order, max_len=order)
            if g[-1] != "</s>" or g[-2] != "</s>"
        ]
    part = test_grams[:slice_n]
    t2 = time.perf_counter()
    nll = -sum(lm.logscore(g[-1], g[:-1]) for g in part) * math.log(2)
    t3 = time.perf_counter()
    return {
        "fit_s": t1 - t0,
        "score_s": (t3 - t2) * len(test_grams) / len(part),
        "ppl": None,  # not measured: scoring all of it takes nltk an hour or more
        "ppl_slice": math.exp(nll / len(part)),
        "ngrams": None,
        "bytes_per_ngram": None,
        "scored": len(part),
        "extrapolated": True,
    }


def one(args) -> None:
    fn = run_ours if args.impl == "ngram" else run_nltk
    out = fn(args.ptb, args.method, args.order, args.nltk_slice)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptb", type=Path, required=True)
    ap.add_argument(
        "--nltk-slice",
        type=int,
        default=300,
        help="test n-grams nltk scores; its time is extrapolated to all",
    )
    ap.add_argument("--skip-nltk", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("IMPL", "METHOD", "ORDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        args.impl, args.method, args.order = args.one[0], args.one[1], int(args.one[2])
        return one(args)
    rows = []
    for order in (2, 3):
        for method in ("laplace", "wb", "kn", "mkn"):
            impls = ["ngram"] + ([] if args.skip_nltk or method == "mkn" else ["nltk"])
            for impl in impls:
                cmd = [
                    sys.executable,
                    __file__,
                    "--ptb",
                    str(args.ptb),
                    "--nltk-slice",
                    str(args.nltk_slice),
                    "--one",
                    impl,
                    method,
                    str(order),
                ]
                res = json.loads(
                    subprocess.run(cmd, check=True, capture_output=True, text=True)
                    .stdout.strip()
                    .splitlines()[-1]
                )
                rows.append((order, method, impl, res))
                print(
                    f"order {order} {method:<7} {impl:<5} fit {res['fit_s']:8.2f} s  "
                    f"ppl on first {args.nltk_slice} {res['ppl_slice']:8.2f}, scoring all "
                    f"{res['score_s']:9.2f} s"
                    f"{' (extrapolated)' if res['extrapolated'] else ''}  "
                    f"peak {res['peak_rss_mb']:6.0f} MB",
                    flush=True,
                )
    print(f"\nmachine: {platform.machine()}, python {platform.python_version()}")
    print(
        f"| order | smoothing | library | fit (s) | test ppl (all) | ppl (first {args.nltk_slice})"
        " | scoring all (s) | peak RSS (MB) | "
        "bytes / stored n-gram |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for order, method, impl, r in rows:
        name = {
            "laplace": "Laplace",
            "wb": "Witten-Bell",
            "kn": "KN (D=0.1)",
            "mkn": "modified KN",
        }[method]
        score = f"{r['score_s']:.2f}" + (" *" if r["extrapolated"] else "")
        bpn = f"{r['bytes_per_ngram']:.0f}" if r["bytes_per_ngram"] else "-"
        print(
            f"| {order} | {name} | {impl} | {r['fit_s']:.2f} | "
            f"{'-' if r['ppl'] is None else format(r['ppl'], '.2f')} | {r['ppl_slice']:.2f} | "
            f"{score} | "
            f"{r['peak_rss_mb']:.0f} | {bpn} |"
        )
    print(
        f"\n* nltk scored the first {args.nltk_slice} test n-grams; its time is extrapolated to "
        "all 82,430. The two libraries pad differently (nltk: n-1 <s> and n-1 </s>), so even "
        "on the same tokens their figures differ a little; nltk's Witten-Bell and KN also "
        "differ by design (docs/ngram.md)."
    )


if __name__ == "__main__":
    main()
