"""``generate ckpt=RUN_DIR [prompt=...]``: sample text from a left-to-right model."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from seqlm.data.vocab import Vocab
from seqlm.decoding.step import StepLM
from seqlm.errors import SeqlmError
from seqlm.files import write_text
from seqlm.scorers import load_scorer


def sample(
    lm: StepLM,
    prompt_ids: list[int],
    num_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    stop_at_eos: bool = True,
) -> list[int]:
    """Ancestral sampling with temperature and top-k from ``<eos>`` + the prompt, one token a
    step through the step API (``Scorer.stepper``: the state is carried, so a sample of N
    tokens costs N steps, not N prefixes); any left-to-right model, networks and n-grams
    alike."""
    if temperature <= 0:
        raise SeqlmError(f"temperature={temperature} must be > 0")
    if top_k < 0:
        raise SeqlmError(f"top_k={top_k} must be >= 0 (0 keeps every token)")
    state = lm.start(1)
    for token in prompt_ids:
        state = lm.advance(state, torch.tensor([token]))
    out: list[int] = []
    for _ in range(num_tokens):
        scores = lm.next_log_probs(state)[0] / temperature
        if top_k:
            kth = torch.topk(scores, min(top_k, len(scores))).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        nxt = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
        out.append(nxt)
        if nxt == Vocab.eos_id:
            if stop_at_eos:
                break
            state = lm.start(1)  # a new sentence
        else:
            state = lm.advance(state, torch.tensor([nxt]))
    return out


def run(cfg: DictConfig) -> list[str]:
    scorer = load_scorer(cfg.ckpt, device=cfg.get("device"))
    words = scorer.tokenize(str(cfg.prompt))
    prompt = scorer.encode_known(words, "prompt") if words else []
    lm = scorer.stepper()
    gen = torch.Generator().manual_seed(int(cfg.seed))
    texts = []
    for _ in range(int(cfg.num_samples)):
        ids = sample(
            lm,
            prompt,
            int(cfg.num_tokens),
            float(cfg.temperature),
            int(cfg.top_k),
            gen,
            bool(cfg.stop_at_eos),
        )
        text = scorer.join([*words, *scorer.vocab.decode(i for i in ids if i != Vocab.eos_id)])
        texts.append(text.strip())
        if not cfg.get("out"):
            print(texts[-1])
    if cfg.get("out"):
        path = write_text(Path(cfg.out).expanduser(), "\n".join(texts) + "\n")
        print(f"{len(texts)} samples written to {path}")
    return texts
