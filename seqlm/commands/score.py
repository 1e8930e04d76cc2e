"""``score ckpt=RUN_DIR input=FILE``: n-best rescoring. Each line gets its log-probability
(natural log, ``<eos>`` included), its per-token perplexity, and its rank (best first)."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from seqlm.data.corpora import read_text, split_lines
from seqlm.scorers import load_scorer


def run(cfg: DictConfig) -> list[dict]:
    scorer = load_scorer(cfg.ckpt)
    raw = split_lines(read_text(Path(cfg.input).expanduser()))
    lines = [scorer.tokenize(ln) for ln in raw]
    lps = scorer.sentence_logprobs([scorer.vocab.encode(w) for w in lines])
    rows = [
        {
            "line": i + 1,
            "logprob": lp,
            "ppl": math.exp(-lp / (len(w) + 1)),
            "oov": sum(t not in scorer.vocab.stoi for t in w),
            "text": text,
        }
        for i, (lp, w, text) in enumerate(zip(lps, lines, raw))
    ]
    rows.sort(key=lambda r: -r["logprob"])
    kind = "pseudo_logprob" if scorer.pseudo else "logprob"
    out = [f"rank\tline\t{kind}\tppl\toov\ttext"]
    out += [
        f"{r}\t{x['line']}\t{x['logprob']:.4f}\t{x['ppl']:.2f}\t{x['oov']}\t{x['text']}"
        for r, x in enumerate(rows, 1)
    ]
    if cfg.get("output"):
        Path(cfg.output).write_text("\n".join(out) + "\n", encoding="utf-8")
    else:
        print("\n".join(out))
    return rows
