"""When does each cell learn each subject-verb distance? Agreement accuracy per distance
bucket measured during training (a validation every ``--val-every`` steps), for rnn, gru and
lstm, on the default grammar and on the nested one (``data=agreement_nested``: center-embedded
relatives, which need a stack), with kn3 as a flat line. Then the gradient-through-time curves
(``seqlm gradients``) of the same runs, trained and at initialisation.

    python benchmarks/agreement_by_distance.py [--out docs] [--epochs 8] [--val-every 25]
    python benchmarks/agreement_by_distance.py --cells lstm,gru,mogrifier,mingru,minlstm \
        --data agreement_nested --out docs/cells   # the cells after the tutorial

Writes to ``--out``: ``agreement_curves.png`` (accuracy per bucket against training tokens),
``agreement_by_distance.md`` (time and training tokens to first reach 99% per cell and bucket,
final accuracy per bucket), ``gradients.png`` and ``gradients.csv``. Times are the wall time of
training as ``history.jsonl`` records it (validation passes included).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402

from seqlm.commands import gradients  # noqa: E402
from seqlm.commands.train import train  # noqa: E402
from seqlm.evaluation.summary import BUCKETS, bucket_name  # noqa: E402

CELLS = ("rnn", "gru", "lstm")  # the default --cells
DATASETS = {
    "agreement": "default grammar, distances 1-16",
    "agreement_nested": "nested, depth <= 3",
}
THRESHOLD = 0.99
MIN_EVENTS = 50  # a bucket with fewer validation events is left out of the table


def config(name: str, overrides: list[str]):
    with initialize_config_module("seqlm.conf", version_base="1.3"):
        return compose(name, overrides)


def curves(run: Path) -> list[dict]:
    """The validation lines of a run's history (each has the bucket accuracies)."""
    rows = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines() if x]
    return [r for r in rows if "val/ppl" in r]


def first_reach(rows: list[dict], key: str, tokens_per_step: int) -> tuple[str, str]:
    """(seconds, training tokens) at the first validation from which ``key`` stays at or above
    THRESHOLD to the end of training (a bucket's accuracy is noisy; reached once is not
    learned)."""
    held = None
    for r in rows:
        if r.get(key) is None or r[key] < THRESHOLD:
            held = None
        elif held is None:
            held = r
    if held is None:
        return "not reached", ""
    return f"{held['time_s']:.0f}", f"{held['step'] * tokens_per_step / 1e3:.0f}k"


def events(final: dict, lo: int, hi: int | None) -> int:
    """Agreement events of the validation split in a distance bucket."""
    by_d = final.get("val/agreement_by_distance") or {}
    return sum(t for d, (_, t) in by_d.items() if int(d) >= lo and (hi is None or int(d) <= hi))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--runs", type=Path, default=Path("outputs/agreement_by_distance"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--val-every", type=int, default=25)
    ap.add_argument("--reuse", action="store_true", help="keep runs that finished (metrics.json)")
    ap.add_argument("--cells", default=",".join(CELLS), help="comma-separated model presets")
    ap.add_argument("--data", default=",".join(DATASETS), help="comma-separated grammars")
    args = ap.parse_args()
    args.cells = tuple(args.cells.split(","))
    args.data = {d: DATASETS[d] for d in args.data.split(",")}
    args.out.mkdir(parents=True, exist_ok=True)
    keys = [f"val/agreement_{bucket_name(lo, hi)}" for lo, hi in BUCKETS]
    labels = [bucket_name(lo, hi)[1:] for lo, hi in BUCKETS]
    results: dict = {}
    for data in args.data:
        for model in (*args.cells, "kn3"):
            run = args.runs / f"{data}-{model}"
            overrides = [f"model={model}", f"data={data}", "logger=none"]
            if model != "kn3":
                overrides += [
                    f"trainer.max_epochs={args.epochs}",
                    f"+trainer.val_check_interval={args.val_every}",
                    "trainer.enable_progress_bar=false",
                ]
            cfg = config("train", overrides)
            if args.reuse and (run / "metrics.json").is_file():
                m = json.loads((run / "metrics.json").read_text())
            else:
                m = train(cfg, run_dir=run)
            tokens_per_step = cfg.data.batch_size * cfg.data.bptt
            results[(data, model)] = {"run": run, "final": m, "tokens_per_step": tokens_per_step}
            print(data, model, f"test ppl {m['test/ppl']:.3f}", flush=True)
    plot_curves(results, keys, labels, args.out / "agreement_curves.png", args)
    table = report(results, keys, labels, args)
    (args.out / "agreement_by_distance.md").write_text(table)
    print(table)
    for data in args.data:  # the trained runs, and the same cells at initialisation (seed 0)
        runs = ",".join(str(results[(data, c)]["run"]) for c in args.cells)
        found = gradients.curves_of(config("gradients", [f"runs=[{runs}]", "lags=60"]))
        for cell in args.cells:
            cfg = config("gradients", [f"model={cell}", f"data={data}", "lags=60"])
            [untrained] = gradients.curves_of(cfg)
            untrained.run = f"untrained {cell}"
            found.append(untrained)
        for c in found:
            c.run = c.run.replace(f"{data}-", "")
        gradients.write(found, args.out / f"gradients-{data}")


def plot_curves(results: dict, keys: list[str], labels: list[str], path: Path, args) -> None:
    shown = [1, 2, 3, 4, 5]  # buckets 2-5, 6-10, 11-15, 16-20, 21-30
    rows = len(args.data)
    fig, axes = plt.subplots(
        rows, len(shown), figsize=(16, 3.25 * rows + 0.5), sharey=True, squeeze=False
    )
    colours = {
        "rnn": "#e15759",
        "gru": "#59a14f",
        "lstm": "#4e79a7",
        "kn3": "#b07aa1",
        "mogrifier": "#f28e2b",
        "mingru": "#76b7b2",
        "minlstm": "#9c755f",
    }
    for row, data in enumerate(args.data):
        for col, b in enumerate(shown):
            ax = axes[row][col]
            for model in (*args.cells, "kn3"):
                r = results[(data, model)]
                if model == "kn3":
                    final = r["final"].get(keys[b].replace("val/", "test/"))
                    if final is not None:
                        ax.axhline(final, color=colours[model], ls=":", label="kn3")
                    continue
                per_k = r["tokens_per_step"] / 1e3
                pts = [(h["step"] * per_k, h[keys[b]]) for h in curves(r["run"]) if keys[b] in h]
                if pts:
                    ax.plot(*zip(*pts), color=colours[model], label=model)
            ax.axhline(THRESHOLD, color="grey", lw=0.8, ls="--")
            ax.set_title(f"{data}: distance {labels[b]}", fontsize=9)
            ax.set_ylim(0.4, 1.02)
            ax.grid(alpha=0.3)
            if row == rows - 1:
                ax.set_xlabel("training tokens (thousands)")
        axes[row][0].set_ylabel("agreement accuracy (valid)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(results: dict, keys: list[str], labels: list[str], args) -> str:
    lines = [
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{time.strftime('%Y-%m-%d')}; {args.epochs} epochs per network, a validation every "
        f"{args.val_every} steps, shipped defaults otherwise.",
        "",
    ]
    for data, title in args.data.items():
        lines += [
            f"**data={data}** ({title}): time (s) and training tokens to first reach "
            f"{THRESHOLD:.0%} agreement on the validation split and hold it to the end, per "
            f"distance bucket (buckets with fewer than {MIN_EVENTS} validation events left out)",
            "",
            "| model | " + " | ".join(labels) + " | test ppl | floor | train s |",
            "| --- |" + " ---: |" * (len(labels) + 3),
        ]
        for model in (*args.cells, "kn3"):
            r = results[(data, model)]
            m = r["final"]
            if model == "kn3":
                cells = [_acc(m.get(k.replace("val/", "test/"))) for k in keys]
            else:
                rows = curves(r["run"])
                cells = []
                for k, (lo, hi) in zip(keys, BUCKETS):
                    if events(m, lo, hi) < MIN_EVENTS:
                        cells.append("")
                        continue
                    secs, toks = first_reach(rows, k, r["tokens_per_step"])
                    cells.append(f"{secs} s / {toks}" if toks else secs)
            lines.append(
                f"| {model} | " + " | ".join(cells) + f" | {m['test/ppl']:.2f} | "
                f"{m['test/ppl_floor']:.2f} | {m['time/train_s']:.0f} |"
            )
        lines.append("")
        lines.append("Final test accuracy per bucket:")
        lines.append("")
        lines += ["| model | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
        for model in (*args.cells, "kn3"):
            m = results[(data, model)]["final"]
            cells = [_acc(m.get(k.replace("val/", "test/"))) for k in keys]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("kn3 has no training curve: its row gives its (final) accuracy.")
    return "\n".join(lines)


def _acc(v) -> str:
    return "" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    main()
