"""How fast a language model serves a recogniser: ``seqlm rescore`` of 1,000 utterances of 50
hypotheses (a whole process), and the step API's lookups (batches of 64 states).

    python benchmarks/decoding_speed.py --kn3 KN3_RUN --net NET_RUN [--ptb ../shared/data/ptb]
        [--out docs/decoding_speed.md]

The n-best lists are made from PTB test sentences: each utterance's 50 hypotheses are its
sentence with 0-3 random word edits (substitution, deletion, insertion), with random first-pass
scores. The rescoring time is the wall time of the whole ``python -m seqlm rescore`` process
(start-up, loading the model and writing the outputs included) and the scoring time that run
reports (``time/score_s``: the LM's pass over every hypothesis, and WER bookkeeping). The step
figures time the calls alone, after one warm-up call, as the median of several rounds; a
2x650 LSTM is timed untrained (its speed does not depend on its weights).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

import seqlm
from seqlm.scorers.network import NetworkStepLM


def nbest_lists(ptb: Path, out: Path, utterances: int, hyps: int, seed: int = 0) -> None:
    rnd = random.Random(seed)
    with gzip.open(ptb / "ptb.test.txt.gz", "rt") as f:
        sentences = [ln.split() for ln in f if len(ln.split()) >= 3][:utterances]
    vocab = sorted({w for s in sentences for w in s})
    with (out / "nbest.tsv").open("w") as nb, (out / "refs.tsv").open("w") as rf:
        for i, words in enumerate(sentences):
            rf.write(f"u{i}\t{' '.join(words)}\n")
            for _ in range(hyps):
                hyp = list(words)
                for _ in range(rnd.randrange(4)):
                    j = rnd.randrange(len(hyp))
                    edit = rnd.randrange(3)
                    if edit == 0:
                        hyp[j] = rnd.choice(vocab)
                    elif edit == 1 and len(hyp) > 1:
                        del hyp[j]
                    else:
                        hyp.insert(j, rnd.choice(vocab))
                nb.write(f"u{i}\t{-rnd.random() * 5:.4f}\t{' '.join(hyp)}\n")


def rescore_time(run: Path, work: Path) -> dict:
    started = time.perf_counter()
    out = work / f"rescore-{run.name}"
    subprocess.run(
        [sys.executable, "-m", "seqlm", "rescore", f"ckpt={run}", f"nbest={work / 'nbest.tsv'}",
         f"refs={work / 'refs.tsv'}", "logger=none", f"hydra.run.dir={out}"],
        check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    report = json.loads((out / "rescore.json").read_text())
    return {"wall_s": wall, "score_s": report["time/score_s"], "hyps": report["rescore/hypotheses"]}


def median_time(fn, rounds: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_figures(lm, batch: int = 64, calls: int = 20) -> dict:
    state = lm.start(batch)
    tokens = torch.randint(2, lm.vocab_size, (batch,))
    state = lm.advance(state, tokens)
    asked = [torch.randint(2, lm.vocab_size, (batch,)) for _ in range(calls)]  # a new batch a call

    def queries():
        for words in asked:
            lm.token_log_probs(state, words)

    return {
        "queries_per_s": batch * calls / median_time(queries, 3),
        "v_wide_ms": 1000 * median_time(lambda: lm.next_log_probs(state), 3),
        "step_ms": 1000 * median_time(lambda: lm.advance(state, tokens)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kn3", type=Path, required=True)
    ap.add_argument("--net", type=Path, required=True)
    ap.add_argument("--ptb", type=Path, default=Path("../shared/data/ptb"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/decoding-speed"))
    ap.add_argument("--out", type=Path, default=Path("docs/decoding_speed.md"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    nbest_lists(args.ptb, args.work, 1000, 50)
    rows = []
    for run in (args.kn3, args.net):
        r = rescore_time(run, args.work)
        size, wall, score = f"{r['hyps']:,} hypotheses", r["wall_s"], r["score_s"]
        rows.append(f"| `rescore` with {run.name} | {size} | {wall:.1f} s | {score:.1f} s |")
    net = seqlm.load(args.net)
    steps = {"kn3": step_figures(seqlm.load(args.kn3)), args.net.name: step_figures(net)}
    steps["2x650 LSTM, untrained"] = step_figures(build_lstm_650(net))
    lines = [
        f"Measured {date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        "| what | size | whole process | scoring |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        "| step API, 64 states | single-word queries/s | V-wide distribution | advance |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {k} | {v['queries_per_s']:,.0f} | {v['v_wide_ms']:.1f} ms | {v['step_ms']:.2f} ms |"
          for k, v in steps.items()],
    ]  # fmt: skip
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def build_lstm_650(like: NetworkStepLM) -> NetworkStepLM:
    """An untrained 2x650 LSTM (Zaremba et al.'s medium shape) with ``like``'s vocabulary."""
    from seqlm.scorers.network import network_scorer
    from seqlm.training.module import LitLM

    model = dict(like.scorer.lit.hparams["model"], hidden_size=650, emb_size=650, num_layers=2)
    lit = LitLM(model, {}, like.vocab.itos, like.scorer.config)
    return NetworkStepLM(network_scorer(lit))


if __name__ == "__main__":
    main()
