"""``compare``: runs side by side, from their local files only (no network).

``python -m seqlm compare RUN_DIR... [out=DIR] [wandb=true]`` reads each run's
``metrics.json``, ``config.yaml`` and ``history.jsonl`` and writes to ``out``:
``comparison.md`` and ``comparison.csv`` (one row per run), ``val_ppl.png`` (validation ppl
against training tokens and against wall time) and ``test_ppl.png`` (test ppl per run, with
the corpus floor and the best n-gram drawn as lines). The directory of a run that did not
finish is skipped with a note; runs with no validation to plot are named. Runs scored on a
different vocabulary or on different test tokens are refused: their perplexities are not
comparable. A bidirectional model's pseudo-perplexity has its own column and is never drawn
with the others.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from seqlm.analysis.plotting import pyplot
from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import is_ngram, model_label, table_row
from seqlm.files import write_text, written

COLUMNS = [  # (key of schema.table_row, title)
    ("run", "run"),
    ("model", "model"),
    ("cell", "cell / smoothing"),
    ("layers", "layers"),
    ("hidden", "hidden"),
    ("size", "params / n-grams"),
    ("val_ppl", "val ppl"),
    ("test_ppl", "test ppl"),
    ("test_pseudo_ppl", "test pseudo-ppl"),
    ("test_bits", "test bits"),
    ("test_wer_first_pass", "first-pass WER %"),
    ("test_wer", "test WER %"),
    ("test_cer_greedy", "greedy CER %"),  # a CTC decoding's best path
    ("test_cer", "test CER %"),
    ("train_s", "train s"),
    ("train_tokens_per_s", "train tokens/s"),
    ("count_tokens_per_s", "count tokens/s"),
    ("test_agreement", "agreement %"),  # the built-in corpus: subject-verb agreement
    ("test_agreement_far", "agreement % (d >= 5)"),
    ("test_ppl_floor", "test ppl floor"),  # the best ppl any model can reach on it
]


@dataclass
class Run:
    path: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_ngram(self) -> bool:
        return is_ngram(self.metrics)

    @property
    def label(self) -> str:
        return f"{model_label(self.metrics)} ({self.path.name})"

    def row(self) -> dict[str, Any]:
        return {"run": self.path.name, **table_row(self.metrics)}


def read_run(path: Path) -> Run:
    path = Path(path)
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise SeqlmError(f"{path}: no metrics.json (not a finished seqlm run)")
    try:
        metrics = json.loads(metrics_file.read_text())
    except json.JSONDecodeError as e:
        raise SeqlmError(f"{metrics_file}: not valid JSON ({e})") from None
    history_file = path / "history.jsonl"
    history = []
    if history_file.is_file():
        history = [json.loads(line) for line in history_file.read_text().splitlines() if line]
    return Run(path, metrics, history)


def check_comparable(runs: list[Run]) -> None:
    """One vocabulary and one set of test tokens, or a one-line refusal naming the odd run."""
    first = runs[0]
    for key, what in (("data/vocab_hash", "vocabulary"), ("data/test_hash", "test tokens")):
        for run in runs[1:]:
            a, b = first.metrics.get(key), run.metrics.get(key)
            if a != b:
                raise SeqlmError(
                    f"{run.path} was scored on a different {what} ({key} {b}) than "
                    f"{first.path} ({a}): their perplexities cannot share a column"
                )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The table, without the columns no run has a figure in (the CSV keeps them all)."""
    columns = [(k, t) for k, t in COLUMNS if k == "run" or any(r[k] != "" for r in rows)]
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" if k in ("run", "model", "cell") else "---:" for k, _ in columns)
    body = ["| " + " | ".join(_fmt(r[k]) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule + "|", *body])


def plot_val_ppl(runs: list[Run], path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    points = {run.label: [h for h in run.history if "val/ppl" in h] for run in runs}
    # training tokens (runs of other batch sizes line up), else optimizer steps for histories
    # written before tokens were recorded; never epochs: validations inside an epoch get their
    # own place, and a resumed run continues its own count
    x = "tokens" if all("tokens" in h for pts in points.values() for h in pts) else "step"
    for label, pts in points.items():
        if pts:
            by_step.plot([h[x] for h in pts], [h["val/ppl"] for h in pts], "o-", label=label)
            by_time.plot([h["time_s"] for h in pts], [h["val/ppl"] for h in pts], "o-", label=label)
    first = "training tokens" if x == "tokens" else "optimizer step"
    for ax, xlabel in ((by_step, first), (by_time, "wall time of training (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation perplexity")
        ax.grid(True, alpha=0.3)
    by_step.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_step.legend(fontsize=8)
    fig.tight_layout()
    with written(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def plot_test_ppl(runs: list[Run], path: Path) -> None:
    plt = pyplot()

    # pseudo-ppl is not on this scale; an infinite ppl (MLE) is null and has no bar
    # (a rescoring run repeats its LM's perplexity: its own figure is the WER)
    scored = [
        r
        for r in runs
        if r.metrics.get("test/ppl") is not None
        and r.metrics.get("model/family") not in ("rescore", "decode")
    ]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(scored) + 2), 4))
    names = [f"{model_label(r.metrics)}\n{r.path.name}" for r in scored]
    values = [r.metrics["test/ppl"] for r in scored]
    ax.bar(names, values, color=["#b07aa1" if r.is_ngram else "#4e79a7" for r in scored])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    floor = runs[0].metrics.get("test/ppl_floor")
    if floor:
        ax.axhline(floor, color="black", ls="--", lw=1, label=f"corpus floor {floor:.2f}")
    ngrams = [r.metrics["test/ppl"] for r in scored if r.is_ngram]
    if ngrams:
        ax.axhline(
            min(ngrams), color="#b07aa1", ls=":", lw=1.5, label=f"best n-gram {min(ngrams):.1f}"
        )
    if floor or ngrams:
        ax.legend(fontsize=8)
    ax.set_ylabel("test perplexity")
    ax.set_title(f"test perplexity on {runs[0].metrics.get('data/name', '?')}")
    fig.tight_layout()
    with written(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def compare(run_dirs: list[str | Path], out: str | Path) -> list[dict[str, Any]]:
    """Write the table and the plots for ``run_dirs`` into ``out``; returns the table's rows."""
    if len(run_dirs) < 1:
        raise SeqlmError("compare: give at least one run directory")
    runs = []
    for p in map(Path, run_dirs):
        if not (p / "metrics.json").is_file() and (p / "config.yaml").is_file():
            print(f"skipped {p}: no metrics.json (a run that did not finish)")
            continue
        runs.append(read_run(p))
    if not runs:
        raise SeqlmError("compare: none of the run directories holds a finished run")
    check_comparable(runs)
    unplotted = [r.path.name for r in runs if not any("val/ppl" in h for h in r.history)]
    if unplotted:
        print(f"not in val_ppl.png (no validation in history.jsonl): {', '.join(unplotted)}")
    rows = [r.row() for r in runs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=[k for k, _ in COLUMNS])
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "comparison.csv", table.getvalue())
    write_text(out / "comparison.md", markdown_table(rows) + "\n")
    plot_val_ppl(runs, out / "val_ppl.png")
    plot_test_ppl(runs, out / "test_ppl.png")
    return rows


def log_to_wandb(rows: list[dict[str, Any]], out: Path, project: str) -> None:
    """The table (and the plots) as a run named ``comparison``, offline without a network."""
    import wandb

    from seqlm.runs.tracking import announce, wandb_mode

    run = wandb.init(
        project=project,
        name="comparison",
        job_type="comparison",
        dir=str(out),
        mode=wandb_mode(),
        settings=wandb.Settings(silent=True),
    )
    columns = [k for k, _ in COLUMNS]
    data = [[None if r[k] == "" else r[k] for k in columns] for r in rows]
    run.log(
        {
            "comparison": wandb.Table(columns=columns, data=data),
            "val_ppl": wandb.Image(str(out / "val_ppl.png")),
            "test_ppl": wandb.Image(str(out / "test_ppl.png")),
        }
    )
    announce(run)
    run.finish()


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    rows = compare(list(cfg.runs), cfg.out)
    print(markdown_table(rows))
    print(f"table and plots in {Path(cfg.out).resolve()}")
    if cfg.wandb and (cfg.get("logger") or {}).get("wandb") is not None:  # logger=none: off
        log_to_wandb(rows, Path(cfg.out), cfg.project)
    return rows
