"""``OnnxScorer``: a ``seqlm export`` folder (or its ``with-state.onnx``) loaded back through
onnxruntime, so that ``eval``, ``score``, ``rescore`` and ``decode`` run on the file a runtime
without Python would run, and its figures sit beside the checkpoint's.

Every line is read from a sentence start (zero states, then ``<eos>``), as sherpa-onnx reads
it: ``eval`` of an export is the perplexity of sentences alone, the figure ``export.json`` gives
for the checkpoint (``eval`` of the checkpoint carries its state from line to line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlm.data.batching import line_ids
from seqlm.data.vocab import Vocab
from seqlm.decoding.step import StepLM
from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import STAGE_OF, data_description
from seqlm.evaluation.summary import summarize
from seqlm.scorers import Scorer

BATCH = 256  # lines stepped together


class OnnxScorer(Scorer):
    family = "onnx"
    kind = "an ONNX export"
    instead = "the run directory it was exported from"

    def __init__(self, folder: Path):
        from seqlm.export import session

        facts_file = folder / "export.json"
        if not facts_file.is_file() or not (folder / "with-state.onnx").is_file():
            raise SeqlmError(f"ckpt={str(folder)!r}: not a seqlm export (no export.json)")
        facts = json.loads(facts_file.read_text(encoding="utf-8"))
        if facts.get("tokens") != "the LM's own vocabulary":
            raise SeqlmError(
                f"ckpt={str(folder)!r} maps a recogniser's token ids (tokens=): load the export "
                "made without tokens= to score text"
            )
        itos = [
            ln.rsplit(" ", 1)[0] for ln in (folder / "tokens.txt").read_text("utf-8").splitlines()
        ]
        super().__init__(Vocab(itos), facts.get("config", {}), folder / "with-state.onnx")
        self.session = session(folder / "with-state.onnx")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.layers, self.width = int(meta["num_layers"]), int(meta["hidden_size"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.facts = facts

    def run(self, tokens: np.ndarray, h: np.ndarray, c: np.ndarray):
        """One step of every row: (log-probabilities (N, V) float64, h, c)."""
        feeds = dict(zip(self.names, (tokens.reshape(-1, 1).astype(np.int64), h, c)))
        lp, h, c = self.session.run(None, feeds)
        return lp.astype(np.float64), h, c

    def zeros(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        z = np.zeros((self.layers, n, self.width), dtype=np.float32)
        return z, z.copy()

    def token_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        """log p of every token, each line from a sentence start (``rows`` is not used)."""
        out = self.line_token_logprobs(line_ids(np.asarray(ids), Vocab.eos_id))
        return np.concatenate(out) if out else np.zeros(0)

    def line_token_logprobs(self, lines: list) -> list[np.ndarray]:
        """Lines batched by length, ``BATCH`` at a time, stepped token by token as sherpa-onnx
        steps them: each line's log-probabilities, its ``<eos>`` included."""
        return self.by_length(lines, BATCH, self.stepped)

    def stepped(self, lines: list) -> np.ndarray:
        """(B, W) log p of each line's tokens and ``<eos>``, from zero states, one token a
        call (whatever follows a line's ``<eos>`` is padding)."""
        width = max(len(ln) for ln in lines) + 1
        target = np.full((len(lines), width), Vocab.eos_id, dtype=np.int64)
        for r, ln in enumerate(lines):
            target[r, : len(ln)] = ln
        h, c = self.zeros(len(lines))
        token = np.full(len(lines), Vocab.eos_id, dtype=np.int64)
        lps = np.empty((len(lines), width))
        for t in range(width):
            lp, h, c = self.run(token, h, c)
            lps[:, t] = lp[np.arange(len(lines)), target[:, t]]
            token = target[:, t]
        return lps

    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        h, c = self.zeros(1)
        lp = None
        for token in [Vocab.eos_id, *prefix]:
            lp, h, c = self.run(np.array([token]), h, c)
        return lp[0]

    def stepper(self) -> OnnxStepLM:
        return OnnxStepLM(self)

    def evaluate(self, data, splits=("valid", "test")) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for split in splits:
            lp = self.token_logprobs(data.ids[split])
            out.update(summarize(float(-lp.sum()), len(lp), STAGE_OF[split]))
        return {**out, **data.info()}

    def describe(self) -> dict[str, Any]:
        meta = self.facts.get("metadata", {})
        name = self.config.get("data", {}).get("name", "")
        return {
            "model/name": f"onnx {meta.get('seqlm_cell', '')}".strip(),
            "model/file": str(self.path),
            **data_description(name, len(self.vocab), self.vocab.digest()),
        }


@dataclass
class OnnxState:
    lp: np.ndarray  # (B, V): the next token's log-probabilities
    h: np.ndarray  # (layers, B, hidden)
    c: np.ndarray


class OnnxStepLM(StepLM):
    """The with-state file stepped as sherpa-onnx steps it: one token a row a call."""

    def _read(self, tokens, h, c) -> OnnxState:
        lp, h, c = self.scorer.run(np.asarray(tokens, dtype=np.int64), h, c)
        return OnnxState(lp, h, c)

    def start(self, batch_size: int = 1) -> OnnxState:
        return self._read(np.full(batch_size, Vocab.eos_id), *self.scorer.zeros(batch_size))

    def next_log_probs(self, state: OnnxState) -> torch.Tensor:
        return torch.from_numpy(state.lp.copy())

    def token_log_probs(self, state: OnnxState, tokens: torch.Tensor) -> torch.Tensor:
        rows = np.arange(len(state.lp))
        return torch.from_numpy(state.lp[rows, tokens.cpu().numpy()])

    def advance(self, state: OnnxState, tokens: torch.Tensor) -> OnnxState:
        return self._read(tokens.cpu().numpy(), state.h, state.c)

    def select(self, state: OnnxState, index: torch.Tensor) -> OnnxState:
        i = index.cpu().numpy()
        return OnnxState(state.lp[i], state.h[:, i], state.c[:, i])

    def batch_size(self, state: OnnxState) -> int:
        return len(state.lp)

    def concat(self, states: list[OnnxState]) -> OnnxState:
        return OnnxState(
            np.concatenate([s.lp for s in states]),
            np.concatenate([s.h for s in states], 1),
            np.concatenate([s.c for s in states], 1),
        )


def load_onnx(path: Path) -> OnnxScorer:
    """An export folder, or a file in it (``with-state.onnx`` and the others)."""
    return OnnxScorer(path if path.is_dir() else path.parent)
