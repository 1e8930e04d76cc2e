"""PTB at a fixed CPU budget, one change at a time to ``experiment=cpu_strong``: what each
regulariser buys, AdamW against NT-ASGD, the finetune stage, and the cells after the tutorial
(Mogrifier LSTM, minGRU, minLSTM) beside the LSTM and GRU. Writes its tables into
``docs/ptb_budget.md``, a section per subcommand.

    python benchmarks/ptb_budget.py ablation --ptb ../shared/data/ptb [--minutes 30]
    python benchmarks/ptb_budget.py finetune --ptb ... --from RUN_DIR [--minutes 30]
    python benchmarks/ptb_budget.py cells --ptb ... [--minutes 30]
    python benchmarks/ptb_budget.py speed --ptb ... [--tokens 64000]
    python benchmarks/ptb_budget.py layers --device cuda   # the layers alone, printed

Every run is one whole ``python -m seqlm train`` process with ``trainer.max_time`` as the
budget (Lightning's clock: from the first step, validations included; start-up and the final
test on the whole test split are not in it), run directories under ``--work``; a run whose
``metrics.json`` exists is reused (``--fresh`` retrains), so a table can be finished over several
sittings. ``--jobs 2 --threads 1`` runs two at once, each pinned to its own core: a budget of
one core each, which the table then says.

``cells`` sets ``model.wdrop=0`` for every cell (the minimal cells have no hidden-to-hidden
matrix to drop) and keeps the rest of the recipe. ``speed`` times training tokens/s of each
cell at bptt 35 and 200 (whole processes, the same number of training tokens, no validation),
and the recurrent layers alone, forward and backward, with the minimal cells' two forms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
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


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()


def run(args, run_dir: Path, overrides: list[str], core: int | None = None) -> dict:
    """One whole ``train`` process (reused when finished); its metrics."""
    done = run_dir / "metrics.json"
    if done.exists() and not args.fresh:
        return json.loads(done.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "seqlm", "train", *RECIPE, f"data.root={args.ptb}"]
    cmd += [*overrides, f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        subprocess.run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    return json.loads(done.read_text())


def run_all(args, jobs: dict[str, tuple[Path, list[str]]]) -> dict[str, dict]:
    """Every job, ``--jobs`` at a time (each pinned to its own core when more than one)."""
    names = list(jobs)
    if args.jobs == 1:
        return {n: run(args, *jobs[n]) for n in names}
    results: dict[str, dict] = {}

    def worker(slot: int) -> None:
        for n in names[slot :: args.jobs]:
            results[n] = run(args, *jobs[n], core=slot)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(worker, range(args.jobs)))
    return {n: results[n] for n in names}


def budget_note(args) -> str:
    each = "one at a time"
    if args.jobs > 1:
        each = f"{args.jobs} runs at once, each pinned to one core"
    threads = f", {args.threads} thread(s) each" if args.threads else ""
    return (
        f"Machine: {machine()}; {args.minutes} minutes of training per run "
        f"(`trainer.max_time`), {each}{threads}. Test perplexity on the whole PTB test split "
        "(82,430 tokens), best checkpoint by validation."
    )


def table(rows: list[tuple[str, dict]], base: float) -> list[str]:
    lines = [
        "| run | val ppl | test ppl | vs first row | epochs | training tokens/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['val/ppl']:.2f} | {m['test/ppl']:.2f} | "
            f"{100 * (m['test/ppl'] / base - 1):+.1f}% | {m.get('train/epochs', '')} | "
            f"{m.get('train/tokens_per_s', 0):,.0f} |"
        )
    return lines


def ablation(args) -> None:
    limit = [f"trainer.max_time=00:00:{args.minutes:02d}:00"]
    jobs = {n: (args.work / f"ablation-{slug(n)}", [*o, *limit]) for n, o in ABLATION.items()}
    results = run_all(args, jobs)
    rows = list(results.items())
    lines = [budget_note(args), "", *table(rows, rows[0][1]["test/ppl"])]
    lines += [
        "",
        "Each row sets one regulariser of the recipe to zero (AR/TAR: both `alpha` and `beta`), "
        "or swaps the optimiser; everything else is `experiment=cpu_strong`.",
    ]
    write_section(
        f"What each regulariser buys ({args.minutes} minutes)",
        "\n".join(lines) + "\n",
        DOC,
        HEADING,
    )


def finetune(args) -> None:
    src = Path(args.source).resolve()
    ckpt = src / "checkpoints" / "best.ckpt"
    base = json.loads((src / "metrics.json").read_text())
    extra = [
        f"init_from={ckpt}",
        "optim=nt_asgd",
        f"optim.optimizer.lr={args.lr}",
        "optim.scheduler=null",
        "optim.average_from_start=true",
        f"trainer.max_time=00:00:{args.minutes:02d}:00",
    ]
    m = run(args, args.work / f"finetune-lr{args.lr:g}", extra)
    lines = [
        budget_note(args),
        "",
        f"From `{src}`'s best checkpoint: `init_from=... optim=nt_asgd optim.optimizer.lr="
        f"{args.lr:g} optim.average_from_start=true` (AWD-LSTM's finetune: SGD with the "
        "average of every step's weights, stopped when validation stops improving).",
        "",
        *table(
            [("before (the run itself)", base), ("after the finetune stage", m)], base["test/ppl"]
        ),
    ]
    write_section("The finetune stage", "\n".join(lines) + "\n", DOC, HEADING)


def cells(args) -> None:
    limit = [f"trainer.max_time=00:00:{args.minutes:02d}:00"]
    jobs = {
        c: (args.work / f"cell-{c}", [f"model.cell={c}", "model.wdrop=0", *limit]) for c in CELLS
    }
    results = run_all(args, jobs)
    rows = list(results.items())
    lines = [budget_note(args), "", *table(rows, rows[0][1]["test/ppl"])]
    lines += [
        "",
        "`experiment=cpu_strong model.cell=CELL model.wdrop=0`; the first row is the LSTM.",
    ]
    write_section(f"Cells at {args.minutes} minutes", "\n".join(lines) + "\n", DOC, HEADING)


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
    ap.add_argument("what", choices=["ablation", "finetune", "cells", "speed", "layers"])
    ap.add_argument("--ptb", type=Path, help="folder with ptb.*.txt[.gz]")
    ap.add_argument("--device", default="cpu", help="layers: where to time them (cuda)")
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--from", dest="source", help="finetune: the run directory to start from")
    ap.add_argument("--lr", type=float, default=30.0, help="finetune: SGD's learning rate")
    ap.add_argument("--tokens", type=int, default=64000, help="speed: training tokens per run")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS per run (0: all)")
    ap.add_argument("--work", type=Path, default=Path("runs/ptb_budget"))
    ap.add_argument("--fresh", action="store_true", help="retrain runs that finished")
    args = ap.parse_args()
    if args.what == "layers":  # printed only (gpu_check.sh)
        print("\n".join(layer_table(args.device)))
        return
    if args.ptb is None:
        ap.error("--ptb is required")
    args.ptb = args.ptb.resolve()
    args.work = args.work.resolve()
    {"ablation": ablation, "finetune": finetune, "cells": cells, "speed": speed}[args.what](args)
    print(DOC.read_text())


if __name__ == "__main__":
    main()
