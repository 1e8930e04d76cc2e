"""``fill ckpt=RUN_DIR text="i plan to ___ a new phone"``: the most likely words for the blank.

The bidirectional model answers directly: p(w | left, right) is its output at the blank. A
left-to-right model scores the whole sentence with each vocabulary word in the blank, and
normalises: p(w | left, right) = p(left w right) / sum_v p(left v right).
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError
from seqlm.scoring import encode_known, load_run

BLANK = "___"


@torch.no_grad()
def blank_logprobs(loaded, left: list[int], right: list[int]) -> np.ndarray:
    """log p(w | left, right) for every vocabulary word w (``<unk>``/``<eos>`` excluded)."""
    V = len(loaded.vocab)
    if loaded.pseudo:
        eos = Vocab.eos_id
        tokens = torch.tensor([[eos, *left, 0, *right, eos, eos]])
        logits = loaded.lit.net(tokens, torch.tensor([tokens.shape[1]]))
        scores = logits[0, len(left)].double()
    else:
        cands = [[*left, w, *right] for w in range(V)]
        scores = torch.from_numpy(loaded.sentence_logprobs(cands))
    scores[[Vocab.unk_id, Vocab.eos_id]] = float("-inf")
    return torch.log_softmax(scores, 0).numpy()


def run(cfg: DictConfig) -> list[tuple[str, float]]:
    loaded = load_run(cfg.ckpt)
    words = loaded.tokenize(str(cfg.text))
    if words.count(BLANK) != 1:
        raise SeqlmError(f"text={str(cfg.text)!r} must hold exactly one {BLANK} blank")
    k = words.index(BLANK)
    context = words[:k] + words[k + 1 :]
    encode_known(loaded, context, "text")
    lp = blank_logprobs(loaded, loaded.vocab.encode(words[:k]), loaded.vocab.encode(words[k + 1 :]))
    top = np.argsort(-lp)[: int(cfg.top_k)]
    best = [(loaded.vocab.itos[i], float(np.exp(lp[i]))) for i in top]
    for w, p in best:
        print(f"{p:.4f}\t{' '.join([*words[:k], w, *words[k + 1 :]])}")
    return best
