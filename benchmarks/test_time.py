"""Better perplexity from models you already have, stacked: a network's base figure, then a
neural cache, dynamic evaluation, interpolation with each n-gram, and all of them together,
each tuned on the validation split and scored on the test split, with the wall time of each.

    python benchmarks/test_time.py --net RUN_DIR --ngram KN3_RUN [--ngram KN5_RUN ...] \
        [--out docs/test_time.md] [--title "..."]

Every step is a seqlm command (``eval`` with ``cache.*``/``dynamic.*``/``tokens_out``, then
``mix``), timed as a whole call in this process (start-up of Python and torch left out). "All
together" reuses the settings the single searches found (no joint search), evaluates the
network with both, and interpolates that export with every n-gram by EM on valid.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from seqlm.commands import eval as eval_cmd
from seqlm.commands import mix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_vocab import machine  # noqa: E402


def config(name: str, overrides: list[str]):
    with initialize_config_module("seqlm.conf", version_base="1.3"):
        return compose(name, overrides)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", required=True, help="a left-to-right network's run directory")
    ap.add_argument(
        "--ngram", required=True, action="append", help="an n-gram run on the same data (repeat)"
    )
    ap.add_argument("--cache-size", type=int, default=500)
    ap.add_argument("--dynamic-method", default="sgd")
    ap.add_argument("--out", type=Path, default=Path("docs/test_time.md"))
    ap.add_argument("--title", default="Test-time methods, stacked")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    rows = []

    base, t = timed(eval_cmd.run, config("eval", [f"ckpt={args.net}"]))
    rows.append(("base", base, t, ""))
    cached, t = timed(
        eval_cmd.run,
        config("eval", [f"ckpt={args.net}", f"cache.size={args.cache_size}", "cache.search=true"]),
    )
    theta, lam = cached["adapt/cache_theta"], cached["adapt/cache_lambda"]
    rows.append(("+ cache", cached, t, f"size {args.cache_size}, theta {theta}, lambda {lam}"))
    dynamic, t = timed(
        eval_cmd.run,
        config(
            "eval",
            [f"ckpt={args.net}", "dynamic.search=true", f"dynamic.method={args.dynamic_method}"],
        ),
    )
    lr = dynamic["adapt/dynamic_lr"]
    rows.append(("+ dynamic evaluation", dynamic, t, f"{args.dynamic_method}, lr {lr}"))
    for i, ngram in enumerate(args.ngram):
        mixed, t = timed(
            mix.run,
            config("mix", [f"runs=[{args.net},{ngram}]", "logger=none"]),
            run_dir=work / f"mix{i}",
        )
        weights = ", ".join(f"{w:.3f}" for w in mixed["model/weights"])
        name = mixed["model/components"][-1]
        rows.append((f"+ {name} interpolation", mixed, t, f"weights {weights}"))
    export = work / "both.npz"
    _, t1 = timed(
        eval_cmd.run,
        config(
            "eval",
            [
                f"ckpt={args.net}",
                f"cache.size={args.cache_size}",
                f"cache.theta={theta}",
                f"cache.lambda={lam}",
                f"dynamic.lr={lr}",
                f"dynamic.method={args.dynamic_method}",
                f"tokens_out={export}",
            ],
        ),
    )
    together, t2 = timed(
        mix.run,
        config("mix", [f"runs=[{export},{','.join(args.ngram)}]", "logger=none"]),
        run_dir=work / "all",
    )
    weights = ", ".join(f"{w:.3f}" for w in together["model/weights"])
    rows.append(
        ("all together", together, t1 + t2, f"cache and dynamic as above; weights {weights}")
    )

    lines = [
        f"# {args.title}",
        "",
        "Better perplexity from models you already have. Each row is a seqlm command:",
        "`eval cache.size=N cache.search=true` (a neural cache, Grave et al. 2017: the next word",
        "is also predicted from the recent hidden states it followed), `eval dynamic.lr=X",
        "dynamic.search=true` (dynamic evaluation, Krause et al. 2018: a gradient step on each",
        "window after it is scored), `mix` with n-gram runs (linear interpolation, weights by EM",
        "on valid), and all of them. Every setting is tuned on the validation split and frozen",
        "for the test split. Made by `python benchmarks/test_time.py --net RUN --ngram RUN ...`;",
        "the wall time is each call's, Python's and torch's start-up left out.",
        "",
        f"network: `{args.net}`; n-grams: {', '.join(f'`{n}`' for n in args.ngram)}; {machine()}",
        "",
        "| method | val ppl | test ppl | change (test) | wall time (s) | tuned on valid |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, m, t, note in rows:
        change = m["test/ppl"] / base["test/ppl"] - 1
        figures = f"{m['val/ppl']:.2f} | {m['test/ppl']:.2f} | {change:+.1%} | {t:.0f}"
        lines.append(f"| {name} | {figures} | {note} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
