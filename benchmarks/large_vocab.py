"""Full against adaptive softmax: training speed and memory at a large vocabulary, and quality
at equal training time on WikiText-2. Writes its tables to ``docs/large_vocab.md``.

    python benchmarks/large_vocab.py speed --wt2 ../shared/data/wikitext-2 [--tokens 100M]
    python benchmarks/large_vocab.py quality --wt2 ../shared/data/wikitext-2 [--minutes 10]

``speed``: the corpus of ``benchmarks/ngram_scale.py`` (WikiText-2's lines repeated to
``--tokens`` with 15% of the words resampled from 42,000 made-up ones), tokenized once into
the memory-mapped id cache (timed: the first run), then one training run per output layer, the
same LSTM, ``--steps`` steps, no validation, 10 test batches. Each figure is a whole process:
wall time and peak RSS (``ru_maxrss`` from ``os.wait4``), and the run's own training
tokens/s. A run on a 1,000-line copy with the same vocabulary size separates the data's
memory from the model's and the optimizer's.

``quality``: WikiText-2, the same 1x256 LSTM with a full and an adaptive softmax (and the
adaptive one under ``bf16-mixed``), each trained for ``--minutes`` (``trainer.max_time``)
and scored on the whole test split; test perplexity, training tokens/s, steps.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ngram_scale import make_corpus, measure, size  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "large_vocab.md"
NET = ["model=lstm", "model.emb_size=256", "model.hidden_size=256", "optim=adamw"]
QUIET = ["trainer.enable_progress_bar=false", "logger=none", "checkpoint.every_n_steps=0"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {datetime.date.today()}"


def train(run_dir: Path, overrides: list[str], env: dict | None = None) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "seqlm", "train", *NET, *QUIET, f"hydra.run.dir={run_dir}"]
    wall, peak = measure([*cmd, *overrides])
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"wall_s": wall, "peak_gb": peak, **m}


def write_section(
    title: str, body: str, doc: Path = DOC, heading: str = "Full and adaptive softmax"
) -> None:
    """Replace the section ``title`` of ``doc`` (or add it; a new file gets ``heading``)."""
    text = doc.read_text() if doc.exists() else f"# {heading}\n\n"
    head = f"## {title}\n"
    if head in text:
        before, rest = text.split(head, 1)
        after = rest.split("\n## ", 1)
        text = before + head + body + ("\n## " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + head + body
    doc.write_text(text.rstrip("\n") + "\n")


def speed(args) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / f"corpus-{args.tokens}.txt"
    if not corpus.exists():
        make_corpus(args.wt2, size(args.tokens), corpus)
    os.environ["SEQLM_DATA"] = str(args.work / "cache")
    shutil.rmtree(args.work / "cache", ignore_errors=True)  # a first run: tokenize, timed alone
    code = (
        "from seqlm.data import prepared_data; from omegaconf import OmegaConf; "
        f"d = prepared_data(OmegaConf.create({{'_target_': 'seqlm.data.CorpusData', "
        f"'name': 'text', 'corpus': 'seqlm.data.corpora.TextCorpus', 'path': '{corpus}', "
        "'batch_size': 20, 'eval_batch_size': 10, 'bptt': 35, 'variable_bptt': False, "
        "'min_freq': 1, 'max_size': None, 'seed': 0, 'use_cache': True}), loaders=False)"
    )
    tok_wall, tok_peak = measure([sys.executable, "-c", code])
    data = ["data=text", f"data.path={corpus}", "data.batch_size=20", "data.bptt=35"]
    common = [*data, f"trainer.max_steps={args.steps}", "+trainer.limit_val_batches=0"]
    common += ["+trainer.limit_test_batches=10"]
    rows = []
    for softmax in ("full", "adaptive"):
        run = train(args.work / f"run-{softmax}", [*common, f"model.softmax={softmax}"])
        rows.append((softmax, run))
        print(json.dumps({k: run[k] for k in ("wall_s", "peak_gb", "train/tokens_per_s")}))
    first_run = rows[0][1]  # the first run tokenized the corpus into the cache
    vocab = first_run["data/vocab_size"]
    # the same vocabulary from few lines (each word once, then the corpus's first lines): the
    # same model and optimizer, next to no data
    words = json.loads((args.work / "run-full" / "vocab.json").read_text())[2:]
    small = args.work / "corpus-small.txt"
    with corpus.open() as f, small.open("w") as out:
        out.writelines(" ".join(words[i : i + 100]) + "\n" for i in range(0, len(words), 100))
        out.writelines(line for _, line in zip(range(args.small_lines), f))
    baseline = []
    for softmax in ("full", "adaptive"):
        cut = [o for o in common if not o.startswith("data.path")]
        run = train(
            args.work / f"small-{softmax}", [*cut, f"data.path={small}", f"model.softmax={softmax}"]
        )
        assert run["data/vocab_size"] == vocab, (run["data/vocab_size"], vocab)
        baseline.append(run)
    lines = [
        f"Machine: {machine()}. Corpus: {first_run['data/train_tokens'] / 1e6:.1f}M training "
        f"tokens, {vocab:,} words (`benchmarks/ngram_scale.py`'s construction). Network: "
        f"`{' '.join(NET)}`, batch 20 x bptt 35, {args.steps} steps, no validation, 10 test "
        "batches. Each figure is one whole `python -m seqlm train` process.",
        "",
        "| softmax | training tokens/s | speed-up | wall s | peak RSS GB | same vocabulary, "
        "1,000 lines, GB | data's share GB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base_rate = rows[0][1]["train/tokens_per_s"]
    for (softmax, run), small_run in zip(rows, baseline):
        rate = run["train/tokens_per_s"]
        lines.append(
            f"| {softmax} | {rate:,.0f} | {rate / base_rate:.1f}x | {run['wall_s']:.0f} | "
            f"{run['peak_gb']:.2f} | {small_run['peak_gb']:.2f} | "
            f"{run['peak_gb'] - small_run['peak_gb']:.2f} |"
        )
    ids_gb = sum(p.stat().st_size for p in (args.work / "cache").rglob("*.ids")) / 1e9
    train_gb = sum(p.stat().st_size for p in (args.work / "cache").rglob("train.ids")) / 1e9
    lines += [
        "",
        f"Tokenizing the {corpus.stat().st_size / 1e9:.2f} GB text into the id cache, the first "
        f"time (a process of its own, no model): {tok_wall:.0f} s, peak RSS {tok_peak:.2f} GB; "
        f"the cache holds {ids_gb:.2f} GB of int32 ids. Every training run above then "
        "memory-maps it. The data's share is the peak RSS beside that of the same command on a "
        "corpus of the same words in 1,000 lines (the same model, optimizer and libraries): "
        f"the pages of the map that {args.steps} steps read, and the loaders (differences "
        "within ±0.05 GB are the noise of two processes). A whole epoch "
        f"would read every page of the training ids ({train_gb:.2f} GB at most, file-backed "
        "pages the kernel can drop). Goals: adaptive at least 5x faster; data at "
        "most ~0.6 GB.",
    ]
    write_section(f"Speed and memory at {vocab:,} words", "\n".join(lines) + "\n")


def quality(args) -> None:
    data = ["data=wikitext2", f"data.root={args.wt2}", "data.batch_size=20", "data.bptt=35"]
    budget = f"+trainer.max_time=00:00:{args.minutes:02d}:00"
    common = [*data, budget, "trainer.max_epochs=100", "+trainer.limit_val_batches=0"]
    runs = []
    for name, extra in (
        ("full", ["model.softmax=full"]),
        ("adaptive", ["model.softmax=adaptive"]),
        ("adaptive, bf16-mixed", ["model.softmax=adaptive", "trainer.precision=bf16-mixed"]),
    ):
        if "bf16" in name and not args.bf16:
            continue
        run = train(args.work / f"wt2-{name.replace(', ', '-')}", [*common, *extra])
        runs.append((name, run))
        print(name, json.dumps({k: run[k] for k in ("test/ppl", "train/tokens_per_s")}))
    full_ppl, full_rate = runs[0][1]["test/ppl"], runs[0][1]["train/tokens_per_s"]
    lines = [
        f"Machine: {machine()}. WikiText-2 (33,278 words), `{' '.join(NET)}`, batch 20 x bptt "
        f"35, {args.minutes} minutes of training each (`trainer.max_time`), no validation, "
        "then the whole test split (every token a target, as always).",
        "",
        "| softmax | test ppl | vs full | training tokens/s | speed-up | steps |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, run in runs:
        ppl, rate = run["test/ppl"], run["train/tokens_per_s"]
        lines.append(
            f"| {name} | {ppl:.2f} | {100 * (ppl / full_ppl - 1):+.1f}% | {rate:,.0f} | "
            f"{rate / full_rate:.1f}x | {run['train/steps']} |"
        )
    lines += [
        "",
        "Goals: adaptive within 2% of the full softmax's test perplexity at >= 2x "
        "its speed; bf16-mixed within 1% of float32's perplexity (here: the adaptive runs).",
    ]
    write_section("Quality at equal training time, WikiText-2", "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["speed", "quality"])
    ap.add_argument("--wt2", required=True, type=Path, help="folder with wiki.*.tokens(.gz)")
    ap.add_argument("--tokens", default="100M")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--small-lines", type=int, default=1000)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--bf16", action="store_true", help="quality: also adaptive in bf16-mixed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/large-vocab"))
    args = ap.parse_args()
    args.wt2 = args.wt2.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    (speed if args.what == "speed" else quality)(args)
    subprocess.run(["cat", str(DOC)], check=False)


if __name__ == "__main__":
    main()
