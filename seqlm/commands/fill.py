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
    scorer = load_scorer(cfg.ckpt, device=cfg.get("device"))
    text = str(cfg.text)
    if text.count(BLANK) != 1:
        raise SeqlmError(f"text={text!r} must hold exactly one {BLANK} blank")
    # the blank is found before tokenizing, so that it is one blank for any tokenizer
    # (a character-level run would otherwise read ___ as three characters)
    left_text, _, right_text = text.partition(BLANK)
    left, right = scorer.tokenize(left_text), scorer.tokenize(right_text)
    scorer.encode_known(left + right, "text")
    lp = scorer.blank_logprobs(scorer.vocab.encode(left), scorer.vocab.encode(right))
    top = np.argsort(-lp)[: int(cfg.top_k)]
    best = [(scorer.vocab.itos[i], float(np.exp(lp[i]))) for i in top]
    for w, p in best:
        print(f"{p:.4f}\t{scorer.join([*left, w, *right])}")
    return best
