"""``score ckpt=RUN_DIR input=FILE``: rank sentences by the LM alone. Each line gets its
log-probability (natural log, ``<eos>`` included; ``log10=true``: log10, KenLM's unit), its
per-token perplexity, and its rank (best first). ``tokens=true`` adds every token's
log-probability, one a line, as KenLM's ``query`` prints them (for an n-gram model with the
length of the n-gram it came from)."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from seqlm.data.corpora import read_text, split_lines
from seqlm.errors import SeqlmError
from seqlm.files import write_text
from seqlm.scorers import load_scorer


def run(cfg: DictConfig) -> list[dict]:
    scorer = load_scorer(cfg.ckpt, device=cfg.get("device"))
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
    unit = 1 / math.log(10) if cfg.get("log10") else 1.0
    kind = ("pseudo_" if scorer.pseudo else "") + ("log10prob" if cfg.get("log10") else "logprob")
    out = [f"rank\tline\t{kind}\tppl\toov\ttext"]
    out += [
        f"{r}\t{x['line']}\t{x['logprob'] * unit:.4f}\t{x['ppl']:.2f}\t{x['oov']}\t{x['text']}"
        for r, x in enumerate(rows, 1)
    ]
    if cfg.get("tokens"):
        out += ["", *token_lines(scorer, lines, kind, unit)]
    if cfg.get("output"):
        write_text(Path(cfg.output).expanduser(), "\n".join(out) + "\n")
    else:
        print("\n".join(out))
    return rows


def token_lines(scorer, lines: list[list[str]], kind: str, unit: float) -> list[str]:
    """``line  position  token  log-prob  ngram_length`` for every token and each line's
    ``</s>``, in input order; the n-gram length is ``-`` for a network."""
    encoded = [scorer.vocab.encode(w) for w in lines]
    per_line = scorer.line_token_logprobs(encoded)
    try:
        lengths = scorer.line_ngram_lengths(encoded)
    except SeqlmError:  # a network's tokens come from no stored n-gram: shown as -
        lengths = None
    out = [f"line\tposition\ttoken\t{kind}\tngram_length"]
    for n, (words, lps) in enumerate(zip(lines, per_line), 1):
        for i, (w, lp) in enumerate(zip([*words, "</s>"], lps)):
            length = "-" if lengths is None else str(int(lengths[n - 1][i]))
            out.append(f"{n}\t{i + 1}\t{w}\t{lp * unit:.4f}\t{length}")
    return out
