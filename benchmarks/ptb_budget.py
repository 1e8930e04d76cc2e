"""PTB at a fixed CPU budget, one change at a time to ``experiment=cpu_strong``: what each
regulariser buys, AdamW against NT-ASGD, the finetune stage, and the cells after the tutorial
(Mogrifier LSTM, minGRU, minLSTM) beside the LSTM and GRU. Writes its tables into
``docs/ptb_budget.md``, a section per table.

    python benchmarks/ptb_budget.py ablation --ptb ../shared/data/ptb [--minutes 30]
    python benchmarks/ptb_budget.py finetune --ptb ... --from RUN_DIR [--lr 30,3] [--minutes 30]
    python benchmarks/ptb_budget.py cells --ptb ... [--minutes 30]
    python benchmarks/ptb_budget.py all --ptb ... [--from RUN_DIR]   # the three, one queue
    python benchmarks/ptb_budget.py speed --ptb ... [--tokens 64000]
    python benchmarks/ptb_budget.py layers --device cuda   # the layers alone, printed

Every run is one whole ``python -m seqlm train`` process with ``trainer.max_time`` as the
budget (Lightning's clock: from the first step, validations included; start-up and the final
test on the whole test split are not in it), run directories under ``--work``; a run whose
``metrics.json`` exists is reused (``--fresh`` retrains), so the tables can be finished over
several sittings: ``--only NAME,...`` trains just those rows (the others show when finished,
else as "not run yet"), ``--table`` trains nothing. Each table is rewritten after every run.
``--jobs 2 --threads 1`` runs two at once, each pinned to its own core: a budget of one core
each, which the table then says (each run records how it was given the machine).

``cells`` sets ``model.wdrop=0`` for every cell (the minimal cells have no hidden-to-hidden
matrix to drop) and keeps the rest of the recipe; its LSTM row is the ablation's ``wdrop=0`` run
(the same command). ``speed`` times training tokens/s of each cell at bptt 35 and 200 (whole
processes, the same number of training tokens, no validation), and the recurrent layers alone,
forward and backward, with the minimal cells' two forms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_vocab import machine, write_section  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "ptb_budget.md"
HEADING = "PTB at a fixed CPU budget"
RECIPE = ["experiment=cpu_strong", "logger=none", "checkpoint.at_minutes=[]"]
ABLATION = {
    "all regularisers (the recipe)": [],
    "dropoute=0": ["model.dropoute=0"],
    "dropouti=0": ["model.dropouti=0"],
    "dropouth=0": ["model.dropouth=0"],
    "dropout=0": ["model.dropout=0"],
    "wdrop=0": ["model.wdrop=0"],
    "AR/TAR=0": ["model.alpha=0", "model.beta=0"],
    "none of them": [
        f"model.{k}=0" for k in ("dropoute", "dropouti", "dropouth", "dropout", "wdrop")
    ]
    + ["model.alpha=0", "model.beta=0"],
    # AWD-LSTM's optimiser instead of AdamW: SGD lr 30, averaging after non-monotone validation
    "NT-ASGD instead of AdamW": ["optim=nt_asgd", "optim.optimizer.lr=30", "optim.scheduler=null"],
}
CELLS = ("lstm", "gru", "mogrifier", "mingru", "minlstm")
BUDGETED = ("cells", "ablation", "finetune")  # the order they are trained in


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()


def run(args, run_dir: Path, overrides: list[str], core: int | None = None) -> None:
    """One whole ``train`` process (skipped when finished; ``finished`` reads it)."""
    if (run_dir / "metrics.json").exists() and not args.fresh:
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "seqlm", "train", *RECIPE, f"data.root={args.ptb}"]
    cmd += [*overrides, f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    run_dir.mkdir(parents=True, exist_ok=True)
    # how this run was given the machine, for its table's note
    budget_file(run_dir).write_text(
        json.dumps({"threads": args.threads, "pinned": core is not None, "at_once": args.jobs})
    )
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        subprocess.run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)


def budget_file(run_dir: Path) -> Path:
    """Where a run records how it was given the machine (beside its log)."""
    return run_dir.parent / f"{run_dir.name}.budget.json"


def finished(run_dir: Path) -> dict | None:
    """A finished run's metrics, with its validation after the first epoch (equal tokens)."""
    done = run_dir / "metrics.json"
    if not done.exists():
        return None
    m = json.loads(done.read_text())
    history = run_dir / "history.jsonl"
    for line in history.read_text().splitlines() if history.exists() else []:
        h = json.loads(line)
        if h.get("epoch") == 0 and "val/ppl" in h:
            m["epoch0/val_ppl"] = h["val/ppl"]
    return m


# A row of a table: (section, name, run directory, overrides).
Row = tuple[str, str, Path, list[str]]


def rows_of(args, what: str) -> list[Row]:
    limit = [f"trainer.max_time=00:00:{args.minutes:02d}:00"]
    if what == "ablation":
        return [
            (what, n, args.work / f"ablation-{slug(n)}", [*o, *limit]) for n, o in ABLATION.items()
        ]
    if what == "cells":
        rows = []
        for c in CELLS:
            if c == "lstm":  # the ablation's wdrop=0 run: the same command, trained once
                run_dir, overrides = args.work / "ablation-wdrop-0", ABLATION["wdrop=0"]
            else:
                run_dir, overrides = args.work / f"cell-{c}", [f"model.cell={c}", "model.wdrop=0"]
            rows.append((what, c, run_dir, [*overrides, *limit]))
        return rows
    if args.source is None:  # finetune
        return []
    ckpt = Path(args.source).resolve() / "checkpoints" / "best.ckpt"
    return [
        (
            what,
            f"lr {lr:g}",
            args.work / f"finetune-lr{lr:g}",
            [
                f"init_from={ckpt}",
                "optim=nt_asgd",
                f"optim.optimizer.lr={lr:g}",
                "optim.scheduler=null",
                "optim.average_from_start=true",
                *limit,
            ],
        )
        for lr in args.lr
    ]


def run_all(args, rows: list[Row]) -> None:
    """Train the rows (those ``--only`` names), ``--jobs`` at a time, each worker taking the
    next row when its run ends (pinned to its own core when more than one); every section's
    table is written again after each run, so a long sitting leaves its tables current."""
    todo, seen = [], set()
    for r in rows:  # a run shared by two tables (the LSTM at wdrop=0) is trained once
        if (not args.only or slug(r[1]) in args.only) and r[2] not in seen:
            todo.append(r)
            seen.add(r[2])
    lock = threading.Lock()

    def worker(slot: int | None) -> None:
        while True:
            with lock:
                if not todo:
                    return
                section, name, run_dir, overrides = todo.pop(0)
            run(args, run_dir, overrides, core=slot)
            with lock:
                write_tables(args, {section})

    if args.jobs == 1:
        worker(None)
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(worker, range(args.jobs)))


def budget_note(args, dirs: list[Path]) -> str:
    """How the finished runs were given the machine, read from what each recorded."""
    ways = set()
    for d in dirs:
        f = budget_file(d)
        b = json.loads(f.read_text()) if f.exists() else {"threads": 0, "at_once": 1}
        each = "one at a time"
        if b.get("at_once", 1) > 1:
            each = f"{b['at_once']} runs at once, each pinned to one core"
        ways.add(each + (f", {b['threads']} thread(s) each" if b.get("threads") else ""))
    return (
        f"Machine: {machine()}; {args.minutes} minutes of training per run "
        f"(`trainer.max_time`), {'; '.join(sorted(ways)) or 'none run yet'}. Test perplexity on "
        "the whole PTB test split (82,430 tokens), best checkpoint by validation."
    )


def table(rows: list[tuple[str, dict | None]]) -> list[str]:
    lines = [
        "| run | val ppl | test ppl | vs first row | val ppl after one epoch | epochs | "
        "training tokens/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = rows[0][1]["test/ppl"] if rows and rows[0][1] else None
    for name, m in rows:
        if m is None:
            lines.append(f"| {name} | not run yet | | | | | |")
            continue
        vs = f"{100 * (m['test/ppl'] / base - 1):+.1f}%" if base else ""
        first = f"{m['epoch0/val_ppl']:.2f}" if "epoch0/val_ppl" in m else ""
        lines.append(
            f"| {name} | {m['val/ppl']:.2f} | {m['test/ppl']:.2f} | {vs} | {first} | "
            f"{m.get('train/epochs', '')} | {m.get('train/tokens_per_s', 0):,.0f} |"
        )
    return lines


def write_tables(args, sections: set[str]) -> None:
    """Each section's table from the runs finished so far."""
    for what in sorted(sections):
        rows = rows_of(args, what)
        if not rows:
            continue
        got = [(name, finished(d)) for _, name, d, _ in rows]
        dirs = [d for (_, _, d, _), (_, m) in zip(rows, got) if m]
        if what == "finetune":
            src = Path(args.source).resolve()
            got.insert(0, ("before (the run itself)", finished(src)))
            title = "The finetune stage"
            text = (
                f"From `{src.name}`'s best checkpoint: `init_from=... optim=nt_asgd "
                "optim.optimizer.lr=LR optim.average_from_start=true` (AWD-LSTM's "
                "finetune: SGD with the average of every step's weights), a row per LR. The "
                "first row is the two-hour run itself, trained on both cores (its first epoch is "
                "from scratch; the others' is the finetune's first)."
            )
        elif what == "ablation":
            title = f"What each regulariser buys ({args.minutes} minutes)"
            text = (
                "Each row sets one regulariser of the recipe to zero (AR/TAR: both `alpha` "
                "and `beta`), or swaps the optimiser; everything else is "
                "`experiment=cpu_strong`."
            )
        else:
            title = f"Cells at {args.minutes} minutes"
            text = (
                "`experiment=cpu_strong model.cell=CELL model.wdrop=0`; the first row is the "
                "LSTM (the ablation's wdrop=0 run)."
            )
        body = [budget_note(args, dirs), "", *table(got), "", text]
        write_section(title, "\n".join(body) + "\n", DOC, HEADING)


LAYERS = [("lstm", None), ("gru", None), ("mogrifier", None), ("mingru", "scan")]
LAYERS += [("mingru", "sequential"), ("minlstm", "scan"), ("minlstm", "sequential")]


def layer_timing(
    cell: str, T: int, form: str | None, device: str = "cpu", batch: int = 32, size: int = 400
) -> float:
    """Milliseconds of one forward and backward of a 1x``size`` layer over (batch, T)."""
    import torch

    from seqlm.models.recurrent import CELLS as MODULES

    torch.manual_seed(0)
    options = {"rounds": 5, "rank": None} if cell == "mogrifier" else {}  # the preset's
    layer = MODULES[cell](size, size, 1, batch_first=True, **options)
    if form:
        layer.form = form
    layer.to(device)
    x = torch.randn(batch, T, size, requires_grad=True, device=device)
    times = []
    for i in range(8):
        start = time.perf_counter()
        out, _ = layer(x)
        out.sum().backward()
        if device != "cpu":
            torch.cuda.synchronize()
        if i >= 3:  # after warm-ups
            times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def speed(args) -> None:
    rows = []
    for bptt in (35, 200):
        steps = max(1, round(args.tokens / (32 * bptt)))
        for cell in CELLS:
            m = run(
                args,
                args.work / f"speed-{cell}-{bptt}",
                [
                    f"model.cell={cell}",
                    "model.wdrop=0",
                    f"data.bptt={bptt}",
                    "data.variable_bptt=false",
                    f"trainer.max_steps={steps}",
                    "+trainer.limit_val_batches=0",
                    "+trainer.limit_test_batches=5",
                    "checkpoint.every_n_steps=0",
                ],
            )
            rows.append((cell, bptt, m["train/tokens_per_s"]))
            print(cell, bptt, f"{m['train/tokens_per_s']:,.0f} tokens/s", flush=True)
    lines = [
        f"Machine: {machine()}. `experiment=cpu_strong model.cell=CELL model.wdrop=0` "
        "(emb 400, layers 800 and 400, batch 32), fixed windows, the same number of training "
        f"tokens (~{args.tokens:,}) at each bptt, no validation; each figure the run's own "
        "`train/tokens_per_s` (its training loop: data, forward, backward, optimizer).",
        "",
        "| cell | tokens/s, bptt 35 | tokens/s, bptt 200 | 200 vs 35 |",
        "| --- | ---: | ---: | ---: |",
    ]
    by = {(c, b): r for c, b, r in rows}
    for cell in CELLS:
        a, b = by[(cell, 35)], by[(cell, 200)]
        lines.append(f"| {cell} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
    lines += ["", *layer_table("cpu")]
    write_section("Cells: training speed", "\n".join(lines) + "\n", DOC, HEADING)


def layer_table(device: str) -> list[str]:
    """The recurrent layer alone on ``device``, the minimal cells in both forms."""
    lines = [
        f"The recurrent layer alone on {device} (1x400, batch 32, forward and backward, median "
        "of 5 after 3 warm-ups, milliseconds); the minimal cells in both forms:",
        "",
        "| layer | T = 35 | T = 200 |",
        "| --- | ---: | ---: |",
    ]
    for cell, form in LAYERS:
        name = f"{cell} ({form})" if form else cell
        t35, t200 = (layer_timing(cell, T, form, device) for T in (35, 200))
        lines.append(f"| {name} | {t35:.1f} | {t200:.1f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=[*BUDGETED, "all", "speed", "layers"])
    ap.add_argument("--ptb", type=Path, help="folder with ptb.*.txt[.gz]")
    ap.add_argument("--device", default="cpu", help="layers: where to time them (cuda)")
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--from", dest="source", help="finetune: the run directory to start from")
    ap.add_argument(
        "--lr",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[30.0],
        help="finetune: SGD's learning rate, or several (30,3): a run each",
    )
    ap.add_argument("--tokens", type=int, default=64000, help="speed: training tokens per run")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS per run (0: all)")
    ap.add_argument("--work", type=Path, default=Path("runs/ptb_budget"))
    ap.add_argument("--fresh", action="store_true", help="retrain runs that finished")
    ap.add_argument(
        "--only",
        type=lambda v: {slug(n) for n in v.split(",")},
        default=set(),
        help="train only these rows, by the names of the tables (letters and digits, the rest "
        "as -: e.g. gru,wdrop-0,all-regularisers--the-recipe,nt-asgd-instead-of-adamw); "
        "the others appear when finished, else as 'not run yet'",
    )
    ap.add_argument("--table", action="store_true", help="train nothing: write the tables")
    args = ap.parse_args()
    if args.what == "layers":  # printed only (gpu_check.sh)
        print("\n".join(layer_table(args.device)))
        return
    if args.ptb is None:
        ap.error("--ptb is required")
    if args.what == "finetune" and args.source is None:
        ap.error("finetune needs --from RUN_DIR")
    args.ptb = args.ptb.resolve()
    args.work = args.work.resolve()
    if args.what == "speed":
        speed(args)
    else:
        sections = BUDGETED if args.what == "all" else (args.what,)
        rows = [r for what in sections for r in rows_of(args, what)]
        unknown = args.only - {slug(r[1]) for r in rows}
        if unknown:
            ap.error(f"--only: no row named {', '.join(sorted(unknown))}")
        if not args.table:
            run_all(args, rows)
        write_tables(args, set(sections))
    print(DOC.read_text())


if __name__ == "__main__":
    main()
