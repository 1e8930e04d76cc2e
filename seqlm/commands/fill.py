"""``fill ckpt=RUN_DIR text="i plan to ___ a new phone"``: the most likely words for the blank.

The bidirectional model answers directly: p(w | left, right) is its output at the blank. A
left-to-right model scores the whole sentence with each vocabulary word in the blank, and
normalises: p(w | left, right) = p(left w right) / sum_v p(left v right).
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from seqlm.errors import SeqlmError
from seqlm.scorers import load_scorer

BLANK = "___"


def run(cfg: DictConfig) -> list[tuple[str, float]]:
    scorer = load_scorer(cfg.ckpt)
    words = scorer.tokenize(str(cfg.text))
    if words.count(BLANK) != 1:
        raise SeqlmError(f"text={str(cfg.text)!r} must hold exactly one {BLANK} blank")
    k = words.index(BLANK)
    scorer.encode_known(words[:k] + words[k + 1 :], "text")
    lp = scorer.blank_logprobs(scorer.vocab.encode(words[:k]), scorer.vocab.encode(words[k + 1 :]))
    top = np.argsort(-lp)[: int(cfg.top_k)]
    best = [(scorer.vocab.itos[i], float(np.exp(lp[i]))) for i in top]
    for w, p in best:
        print(f"{p:.4f}\t{' '.join([*words[:k], w, *words[k + 1 :]])}")
    return best
