"""A trained network (``RecurrentLM`` or the bidirectional ``ClozeLM``) as a ``Scorer``."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlm.adapt import adapted_logprobs
from seqlm.data.batching import IGNORE, SentenceBatches
from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError
from seqlm.lit import LitLM
from seqlm.schema import STAGE_OF, data_description, network_description
from seqlm.scorers import Scorer, _normalise_blank

WINDOW = 256  # positions per forward call when scoring a stream (the state is carried)


class NetworkScorer(Scorer):
    """``lit``'s network in evaluation mode. Sentence batches and streams are scored with
    ``torch.no_grad`` on the CPU or wherever ``lit`` lives."""

    family = "network"

    def __init__(self, lit: LitLM, path: Path | None = None):
        super().__init__(Vocab(lit.vocab_tokens), lit.run_config or {}, path)
        self.lit = lit.eval()
        self.net = lit.net
        self.pseudo = lit.pseudo
        self.layout = self.net.layout

    def _logprobs_of_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T) log p of each target of a ``SentenceBatches`` batch (padding: 0)."""
        target = batch["target"]
        logits = self.net(batch["input"], self.net.lengths_of(target))
        logp = torch.log_softmax(logits.double(), -1)
        return logp.gather(2, target.clamp(min=0)[..., None]).squeeze(2) * (target != IGNORE)

    @torch.no_grad()
    def token_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        ids = np.asarray(ids)
        if self.pseudo:  # each line between <eos> boundaries, in corpus order
            out = []
            for batch in SentenceBatches(ids, Vocab.eos_id, 64, shuffle=False):
                lp = self._logprobs_of_targets(batch)
                keep = batch["target"] != IGNORE
                out.extend(lp[r][keep[r]].numpy() for r in range(len(lp)))
            return np.concatenate(out) if out else np.zeros(0)
        # the plain stream walk of seqlm.adapt: no cache, no dynamic evaluation
        return adapted_logprobs(self.net, ids, rows, WINDOW)

    @torch.no_grad()
    def sentence_logprobs(self, lines: list[list[int]], batch_size: int = 256) -> np.ndarray:
        """For the bidirectional model, the pseudo-log-likelihood: the sum over the line of
        log p(w_t | every other word)."""
        eos, out = Vocab.eos_id, np.zeros(len(lines))
        for start in range(0, len(lines), batch_size):
            chunk = [[*ln, eos] for ln in lines[start : start + batch_size]]
            width = max(len(c) for c in chunk)
            target = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
            for row, c in enumerate(chunk):
                target[row, : len(c)] = torch.tensor(c)
            if self.pseudo:  # <eos> w.. <eos> <eos>: boundaries on both sides
                inp = torch.full((len(chunk), width + 2), eos)
                inp[:, 1:-1] = target.clamp(min=0)
                inp[:, 1:-1][target == IGNORE] = eos
                lp = self._logprobs_of_targets({"input": inp, "target": target})
            else:
                inp = torch.cat([torch.full((len(chunk), 1), eos), target.clamp(min=0)[:, :-1]], 1)
                logits, _ = self.net(inp)
                logp = torch.log_softmax(logits.double(), -1)
                lp = logp.gather(2, target.clamp(min=0)[..., None]).squeeze(2)
                lp = lp * (target != IGNORE)
            out[start : start + len(chunk)] = lp.sum(1).numpy()
        return out

    @torch.no_grad()
    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        if self.pseudo:
            raise SeqlmError(
                f"ckpt={str(self.path)!r} is a bidirectional cloze model: it has no "
                "left-to-right distribution; use `fill` with it"
            )
        logits, _ = self.net(torch.tensor([[Vocab.eos_id, *prefix]]))
        return torch.log_softmax(logits[0, -1].double(), -1).numpy()

    @torch.no_grad()
    def blank_logprobs(self, left: list[int], right: list[int]) -> np.ndarray:
        if not self.pseudo:
            return super().blank_logprobs(left, right)
        eos = Vocab.eos_id
        tokens = torch.tensor([[eos, *left, 0, *right, eos, eos]])
        logits = self.net(tokens, torch.tensor([tokens.shape[1]]))
        return _normalise_blank(logits[0, len(left)].double().numpy())

    def gradient_norms(self, ids: np.ndarray, lags: int, windows: int) -> np.ndarray:
        if self.pseudo:
            raise SeqlmError(
                f"ckpt={str(self.path)!r} is a bidirectional cloze model: it predicts each token "
                "from both sides, so no loss at one step depends on states k steps back only; "
                "gradients measures left-to-right networks"
            )
        from seqlm.gradflow import gradient_norms
        from seqlm.models.recurrent import LayerStack

        if isinstance(getattr(self.net, "rnn", None), LayerStack):
            raise SeqlmError(
                f"ckpt={str(self.path)!r} has per-layer modules (hidden_sizes, dropouth or "
                "wdrop): gradients measures networks whose layers are one module"
            )
        return gradient_norms(self.net, ids, lags, windows)

    def evaluate(self, data, splits=("valid", "test")) -> dict[str, Any]:
        import pytorch_lightning as pl

        trainer = pl.Trainer(
            accelerator="auto",
            devices=1,
            logger=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
        )
        if data.layout != self.layout:
            raise ValueError(f"data built for {data.layout!r}, the model reads {self.layout!r}")
        out: dict[str, Any] = {}
        for split, run in (("valid", trainer.validate), ("test", trainer.test)):
            if split in splits:
                run(self.lit, datamodule=data, verbose=False)
                out.update(self.lit.results[STAGE_OF[split]])
        return {**out, **data.info()}

    def describe(self) -> dict[str, Any]:
        data = self.config.get("data", {})
        params = sum(p.numel() for p in self.net.parameters())
        return {
            **network_description(self.lit.hparams["model"], params),
            **data_description(data.get("name", ""), len(self.vocab), self.vocab.digest()),
        }


def load_network(path: Path) -> NetworkScorer:
    """A network from a run directory (its best checkpoint, else its last) or a ``.ckpt``
    file, read with ``weights_only=True``."""
    ckpt_file = resolve_checkpoint(path)
    try:
        ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
        hp, extra = ckpt["hyper_parameters"], ckpt["seqlm"]
        hp = {**hp, "model": with_preset_defaults(hp["model"])}
        lit = LitLM(**hp, vocab=extra["vocab"], run_config=extra["config"])
        lit.load_state_dict(ckpt["state_dict"])
    except (
        pickle.UnpicklingError,
        RuntimeError,
        zipfile.BadZipFile,
        EOFError,
        KeyError,
        TypeError,
        ValueError,
    ) as e:
        raise SeqlmError(
            f"ckpt={str(ckpt_file)!r}: not a seqlm checkpoint ({type(e).__name__})"
        ) from None
    return NetworkScorer(lit, ckpt_file)


def with_preset_defaults(model: dict) -> dict:
    """A checkpoint's model config with the options added since it was written (AWD-LSTM's
    regularisers) filled in from their preset, ``conf/model/rnn.yaml``, where they are off."""
    if model.get("_target_") != "seqlm.models.RecurrentLM":
        return model
    from omegaconf import OmegaConf

    from seqlm.conf import CONF_DIR

    preset = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "rnn.yaml"))
    return {**preset, **model}


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its best checkpoint, else its last) or a checkpoint file."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return p
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        if (p / name).exists():
            return p / name
    raise SeqlmError(
        f"ckpt={str(path)!r}: run directory holds no checkpoints/best.ckpt or checkpoints/last.ckpt"
    )
