"""Subject-verb agreement accuracy by distance for rnn, gru, lstm and kn3, on the built-in
corpus (distances 1-16) and its long-distance setting (up to ~60): does a plain RNN's
gradient vanish over distance, where the gated cells hold on?

    python benchmarks/agreement_by_distance.py [--out docs] [--epochs 8]

Each model trains with the shipped defaults (``python -m seqlm train model=X data=Y``).
Writes ``agreement_by_distance.png`` and ``agreement_by_distance.md`` (a table) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402

from seqlm.commands.train import train  # noqa: E402

MODELS = ("rnn", "gru", "lstm", "kn3")
DATASETS = {"agreement": "distances 1-16 (default)", "agreement_long": "distances up to ~60"}
BINS = [(1, 1), (2, 5), (6, 10), (11, 15), (16, 20), (21, 30), (31, 40), (41, 50), (51, 99)]


def binned(by_distance: dict) -> list[float | None]:
    out = []
    for lo, hi in BINS:
        c = sum(v[0] for d, v in by_distance.items() if lo <= int(d) <= hi)
        t = sum(v[1] for d, v in by_distance.items() if lo <= int(d) <= hi)
        out.append(c / t if t >= 10 else None)  # too few events: no point
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for data in DATASETS:
        for model in MODELS:
            overrides = [
                f"model={model}",
                f"data={data}",
                "logger=none",
                f"trainer.max_epochs={args.epochs}",
                "trainer.enable_progress_bar=false",
            ]
            with initialize_config_module("seqlm.conf", version_base="1.3"):
                cfg = compose("train", overrides)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as run:
                m = train(cfg, run_dir=Path(run))
            results[(data, model)] = {
                "bins": binned(m["test/agreement_by_distance"]),
                "ppl": m["test/ppl"],
                "floor": m["test/ppl_floor"],
                "far": m["test/agreement_far"],
                "seconds": time.perf_counter() - start,
            }
            print(data, model, json.dumps(results[(data, model)]), flush=True)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    labels = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in BINS]
    for ax, (data, title) in zip(axes, DATASETS.items()):
        for model in MODELS:
            ys = results[(data, model)]["bins"]
            xs = [i for i, y in enumerate(ys) if y is not None]
            ax.plot(xs, [ys[i] for i in xs], marker="o", label=model)
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.set_xticks(range(len(BINS)), labels, rotation=45)
        ax.set_title(f"data={data}: {title}")
        ax.set_xlabel("subject-verb distance (words)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("agreement accuracy (test)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(args.out / "agreement_by_distance.png", dpi=110)

    lines = [
        f"Machine: {platform.machine()}, {time.strftime('%Y-%m-%d')}; "
        f"{args.epochs} epochs per network, shipped defaults otherwise.",
        "",
    ]
    for data, title in DATASETS.items():
        lines += [
            f"**data={data}** ({title})",
            "",
            "| model | " + " | ".join(labels) + " | d>=5 | test ppl | floor | time (s) |",
            "| --- |" + " ---: |" * (len(labels) + 4),
        ]
        for model in MODELS:
            r = results[(data, model)]
            cells = ["" if y is None else f"{y:.2f}" for y in r["bins"]]
            lines.append(
                f"| {model} | " + " | ".join(cells) + f" | {r['far']:.3f} | "
                f"{r['ppl']:.2f} | {r['floor']:.2f} | {r['seconds']:.0f} |"
            )
        lines.append("")
    (args.out / "agreement_by_distance.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
