"""Loading a trained run, and what every command asks of a model: the log-probability of
whole sentences, and the distribution of the next token.

Sentences are scored the way evaluation scores a split's lines: the context starts at an
``<eos>`` boundary, every word and the line's own ``<eos>`` are predicted.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqlm.data.batching import IGNORE
from seqlm.data.tokenize import tokenizer_of
from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError
from seqlm.lit import LitLM


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its best checkpoint, else its last) or a checkpoint file."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt"):
            if (p / name).exists():
                return p / name
        raise SeqlmError(
            f"ckpt={str(path)!r}: run directory holds no checkpoints/best.ckpt "
            "or checkpoints/last.ckpt"
        )
    if not p.exists():
        raise SeqlmError(f"ckpt={str(path)!r}: no such file or run directory")
    return p


@dataclass
class Loaded:
    """A trained network and what it was trained with."""

    lit: LitLM
    vocab: Vocab
    config: dict
    path: Path

    @property
    def pseudo(self) -> bool:
        return self.lit.pseudo

    def tokenize(self, text: str) -> list[str]:
        return tokenizer_of(self.config)(text)

    @torch.no_grad()
    def sentence_logprobs(self, lines: list[list[int]], batch_size: int = 256) -> np.ndarray:
        """Natural-log probability of each line (its ``<eos>`` included). For the cloze model
        it is the pseudo-log-likelihood: the sum of log p(w_t | all other words)."""
        net, eos = self.lit.net, Vocab.eos_id
        out = np.zeros(len(lines))
        for start in range(0, len(lines), batch_size):
            chunk = [[*ln, eos] for ln in lines[start : start + batch_size]]
            width = max(len(c) for c in chunk)
            target = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
            for row, c in enumerate(chunk):
                target[row, : len(c)] = torch.tensor(c)
            safe = target.clamp(min=0)
            if self.pseudo:  # <eos> w.. <eos> <eos>: boundaries on both sides
                inp = torch.cat(
                    [torch.full((len(chunk), 1), eos), safe, torch.full((len(chunk), 1), eos)], 1
                )
                for row, c in enumerate(chunk):
                    inp[row, len(c) + 1] = eos
                logits = net(inp, net.lengths_of(target))
            else:
                inp = torch.cat([torch.full((len(chunk), 1), eos), safe[:, :-1]], 1)
                logits, _ = net(inp)
            nll = F.cross_entropy(
                logits.flatten(0, 1).float(),
                target.flatten(),
                ignore_index=IGNORE,
                reduction="none",
            ).view(target.shape)
            out[start : start + len(chunk)] = -nll.sum(1).double().numpy()
        return out

    @torch.no_grad()
    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        """log p(w | <eos> prefix) for every id w (left-to-right models)."""
        logits, _ = self.lit.net(torch.tensor([[Vocab.eos_id, *prefix]]))
        return torch.log_softmax(logits[0, -1].double(), -1).numpy()

    def evaluate(self, data, splits=("valid", "test")) -> dict:
        """The figures training's final validation and test give, on ``data``."""
        import pytorch_lightning as pl

        trainer = pl.Trainer(
            accelerator="auto",
            devices=1,
            logger=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
        )
        data.layout = self.lit.net.layout
        if "valid" in splits:
            trainer.validate(self.lit, datamodule=data, verbose=False)
        if "test" in splits:
            trainer.test(self.lit, datamodule=data, verbose=False)
        out: dict = {}
        for stage in ("val", "test"):
            out.update(self.lit.results.get(stage, {}))
        return {**out, **data.info()}


def load_run(path: str | Path):
    """A trained run: a network (``Loaded``) from its checkpoint, loaded with
    ``weights_only=True``, or an n-gram model (``NgramRun``) from a run directory, a model.npz
    or an ARPA file."""
    p = Path(path).expanduser()
    if (p.is_dir() and (p / "model.npz").exists()) or p.suffix == ".npz" or ".arpa" in p.name:
        from seqlm.ngram_plugin import load_ngram

        if not p.exists():
            raise SeqlmError(f"ckpt={str(path)!r}: no such file or run directory")
        return load_ngram(p, None)
    p = resolve_checkpoint(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
        hp, extra = ckpt["hyper_parameters"], ckpt["seqlm"]
    except (
        pickle.UnpicklingError,
        RuntimeError,
        zipfile.BadZipFile,
        EOFError,
        KeyError,
        TypeError,
    ) as e:
        raise SeqlmError(f"ckpt={str(p)!r}: not a seqlm checkpoint ({type(e).__name__})") from None
    lit = LitLM(**hp)
    lit.load_state_dict(ckpt["state_dict"])
    lit.vocab_tokens, lit.run_config = extra["vocab"], extra["config"]
    lit.eval()
    return Loaded(lit, Vocab(extra["vocab"]), extra["config"] or {}, p)


def encode_known(loaded: Loaded, words: list[str], what: str) -> list[int]:
    """Ids of ``words``; refuses text whose every word is outside the vocabulary."""
    ids = loaded.vocab.encode(words)
    if words and all(i == Vocab.unk_id for i in ids) and "<unk>" not in words:
        raise SeqlmError(
            f"{what}: every word is outside the model's vocabulary "
            f"({len(loaded.vocab)} words), nothing to condition on"
        )
    return ids
