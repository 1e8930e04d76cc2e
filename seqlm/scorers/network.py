"""A trained network as a ``Scorer``: ``LeftToRightScorer`` for a ``RecurrentLM``,
``ClozeScorer`` for the bidirectional ``ClozeLM``, each offering what its model can do."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlm.compat import tree_map
from seqlm.data.batching import IGNORE, SentenceBatches
from seqlm.data.vocab import Vocab
from seqlm.decoding.step import StepLM
from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import (
    EVAL_PRECISION,
    STAGE_OF,
    data_description,
    network_description,
)
from seqlm.evaluation.test_time import adapted_logprobs, tune
from seqlm.scorers import Scorer, normalise_blank
from seqlm.training.module import LitLM, versions
from seqlm.validation import required

WINDOW = 256  # positions per forward call when scoring a stream (the state is carried)


class NetworkScorer(Scorer):
    """``lit``'s network in evaluation mode: what both kinds of network share. Batches are
    scored with ``torch.no_grad`` wherever ``lit`` lives (``device=``): every tensor is made
    on its weights' device, and results leave it once, in float64 after the output layer
    (``RecurrentLM.target_log_probs``)."""

    family = "network"

    def __init__(self, lit: LitLM, path: Path | None = None):
        super().__init__(Vocab(lit.vocab_tokens), lit.run_config or {}, path)
        self.lit = lit.eval()
        self.net = lit.net
        self.layout = self.net.layout

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @staticmethod
    def padded_targets(lines: list[list[int]]) -> torch.Tensor:
        """(B, W) the lines with their ``<eos>``, padded with ``IGNORE``."""
        chunk = [[*ln, Vocab.eos_id] for ln in lines]
        target = np.full((len(chunk), max(map(len, chunk))), IGNORE, dtype=np.int64)
        for row, c in enumerate(chunk):
            target[row, : len(c)] = c
        return torch.from_numpy(target)

    @torch.no_grad()
    def line_token_logprobs(self, lines: list[list[int]], batch_size: int = 256) -> list:
        """Lines batched by length (little padding a batch), ``batch_size`` at a time."""

        def score(chunk):
            return self.line_logprobs(self.padded_targets(chunk).to(self.device)).cpu().numpy()

        return self.by_length(lines, batch_size, score)

    def line_logprobs(self, target: torch.Tensor) -> torch.Tensor:
        """(B, W) log p of each target of a batch of whole lines (0 at padding)."""
        raise NotImplementedError

    def evaluate(self, data, splits=("valid", "test")) -> dict[str, Any]:
        import pytorch_lightning as pl

        device = self.device
        trainer = pl.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=[device.index or 0] if device.type == "cuda" else 1,
            precision=EVAL_PRECISION,
            logger=False,
            enable_model_summary=False,
            # a bar on a terminal (a network's evaluation of PTB takes minutes), none in logs
            enable_progress_bar=sys.stderr.isatty(),
            enable_checkpointing=False,
        )
        if data.layout != self.layout:
            raise ValueError(f"data built for {data.layout!r}, the model reads {self.layout!r}")
        out: dict[str, Any] = {}
        for split, run in (("valid", trainer.validate), ("test", trainer.test)):
            if split in splits:
                run(self.lit, datamodule=data, verbose=False)
                out.update(self.lit.results[STAGE_OF[split]])
        return {**out, **data.info(), "eval/precision": EVAL_PRECISION}

    def describe(self) -> dict[str, Any]:
        data = self.config.get("data", {})
        return {
            **network_description(self.lit.hparams["model"], self.net),
            **data_description(data.get("name", ""), len(self.vocab), self.vocab.digest()),
        }


class LeftToRightScorer(NetworkScorer):
    """A ``RecurrentLM``: probabilities of text, a next-word distribution, gradients through
    time, and the test-time methods of ``seqlm.evaluation.test_time``."""

    kind = "a left-to-right network"

    def token_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        return self.adapted_logprobs(ids, rows, WINDOW, None, None)  # no cache, no adaptation

    def line_logprobs(self, target: torch.Tensor) -> torch.Tensor:
        inp = torch.cat([torch.full_like(target[:, :1], Vocab.eos_id), target[:, :-1]], 1)
        hidden, _ = self.net.features(inp.clamp(min=0))
        return self.net.target_log_probs(hidden, target, torch.float64)

    @torch.no_grad()
    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        hidden, _ = self.net.features(torch.tensor([[Vocab.eos_id, *prefix]], device=self.device))
        return self.net.log_probs(hidden[0, -1], torch.float64).cpu().numpy()

    def stepper(self) -> NetworkStepLM:
        return NetworkStepLM(self)

    def gradient_norms(self, ids: np.ndarray, lags: int, windows: int) -> np.ndarray:
        from seqlm.analysis.gradflow import gradient_norms

        return gradient_norms(self.net, ids, lags, windows)

    def adapted_logprobs(self, ids, rows, window, cache, dynamic) -> np.ndarray:
        return adapted_logprobs(self.net, np.asarray(ids), rows, window, cache, dynamic)

    def tune_adaptation(self, ids, rows, window, cache, dynamic, search_cache, search_dynamic):
        return tune(self.net, ids, rows, window, cache, dynamic, search_cache, search_dynamic)


class ClozeScorer(NetworkScorer):
    """The bidirectional ``ClozeLM``: each word from both sides, so pseudo-log-likelihoods
    (``eval``, ``score``) and the blank's distribution (``fill``); nothing left to right."""

    kind = "a bidirectional cloze model"
    instead = (
        "it predicts each word from both sides, so its scores are pseudo-log-likelihoods, not "
        "probabilities of the text; use it with fill, eval or score"
    )
    pseudo = True

    def line_logprobs(self, target: torch.Tensor) -> torch.Tensor:
        inp = torch.full((len(target), target.shape[1] + 2), Vocab.eos_id, device=target.device)
        inp[:, 1:-1] = torch.where(target == IGNORE, Vocab.eos_id, target)  # <eos> w.. <eos>
        hidden = self.net.features(inp, self.net.lengths_of(target))
        return self.net.target_log_probs(hidden, target, torch.float64)

    @torch.no_grad()
    def token_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        out = []  # each line between <eos> boundaries, in corpus order
        for batch in SentenceBatches(np.asarray(ids), Vocab.eos_id, 64, shuffle=False):
            target, inp = batch["target"].to(self.device), batch["input"].to(self.device)
            hidden = self.net.features(inp, self.net.lengths_of(target))
            lp = self.net.target_log_probs(hidden, target, torch.float64).cpu().numpy()
            keep = (target != IGNORE).cpu().numpy()
            out.extend(lp[r][keep[r]] for r in range(len(lp)))
        return np.concatenate(out) if out else np.zeros(0)

    def text_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        self.refuse("probabilities of the text to interpolate (mix)")

    @torch.no_grad()
    def blank_logprobs(self, left: list[int], right: list[int]) -> np.ndarray:
        eos = Vocab.eos_id
        tokens = torch.tensor([[eos, *left, 0, *right, eos, eos]], device=self.device)
        hidden = self.net.features(tokens, torch.tensor([tokens.shape[1]], device=self.device))
        lp = self.net.log_probs(hidden[0, len(left)], torch.float64)
        return normalise_blank(lp.cpu().numpy())


@dataclass
class NetworkState:
    """``hidden`` (B, H): the top layer's output after the last token read (what the output
    layer reads); ``carried``: the recurrent state, batch in dimension 1 of every tensor."""

    hidden: torch.Tensor
    carried: Any


class NetworkStepLM(StepLM):
    """A left-to-right network (``RecurrentLM``) stepped one token at a time through its own
    ``features`` and output layer, in evaluation mode."""

    def __init__(self, scorer: Scorer):
        super().__init__(scorer)
        self.net, self.device = scorer.net.eval(), scorer.device

    @torch.no_grad()
    def _read(self, tokens: torch.Tensor, carried: Any) -> NetworkState:
        hidden, carried = self.net.features(tokens.to(self.device)[:, None], carried)
        return NetworkState(hidden[:, 0], carried)

    def start(self, batch_size: int = 1) -> NetworkState:
        return self._read(torch.full((batch_size,), Vocab.eos_id, dtype=torch.long), None)

    @torch.no_grad()
    def next_log_probs(self, state: NetworkState) -> torch.Tensor:
        return self.net.log_probs(state.hidden, torch.float64).cpu()

    @torch.no_grad()
    def token_log_probs(self, state: NetworkState, tokens: torch.Tensor) -> torch.Tensor:
        target = tokens.to(self.device)
        return self.net.target_log_probs(state.hidden, target, torch.float64).cpu()

    def advance(self, state: NetworkState, tokens: torch.Tensor) -> NetworkState:
        return self._read(tokens, state.carried)

    def select(self, state: NetworkState, index: torch.Tensor) -> NetworkState:
        index = index.to(self.device)
        carried = tree_map(lambda t: t.index_select(1, index), state.carried)
        return NetworkState(state.hidden.index_select(0, index), carried)

    def batch_size(self, state: NetworkState) -> int:
        return len(state.hidden)

    def concat(self, states: list[NetworkState]) -> NetworkState:
        hidden = torch.cat([s.hidden for s in states], 0)
        carried = tree_map(lambda *ts: torch.cat(ts, 1), *[s.carried for s in states])
        return NetworkState(hidden, carried)


def network_scorer(lit: LitLM, path: Path | None = None) -> NetworkScorer:
    """The scorer of ``lit``'s kind of network."""
    return (ClozeScorer if lit.pseudo else LeftToRightScorer)(lit, path)


def load_network(path: Path, device: str | None = None) -> NetworkScorer:
    """A network from a run directory (its best checkpoint, else its last) or a ``.ckpt``
    file, read with ``weights_only=True``, on ``device`` (``device_of``)."""
    where = device_of(device)
    ckpt_file = resolve_checkpoint(path)
    try:
        ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
        hp, extra = ckpt["hyper_parameters"], ckpt["seqlm"]
        target = hp["model"]["_target_"]
        if target not in ADDED_OPTIONS:  # never instantiate what a file names: seqlm's networks
            raise ValueError(f"model _target_ {target!r} is not a seqlm network")
        hp = {**hp, "model": complete_model_config(hp["model"])}
        lit = LitLM(**hp, vocab=extra["vocab"], run_config=extra["config"])
        lit.load_state_dict(ckpt["state_dict"])
    except SeqlmError as e:
        raise SeqlmError(f"ckpt={str(ckpt_file)!r}: not a seqlm checkpoint ({e})") from None
    except Exception as e:  # noqa: BLE001 - any way a damaged or foreign file fails: one line
        raise SeqlmError(
            f"ckpt={str(ckpt_file)!r}: not a seqlm checkpoint ({one_line(e)})"
        ) from None
    note = versions_note(extra.get("versions"))
    if note:
        print(f"seqlm: note: ckpt={str(ckpt_file)!r} {note}", file=sys.stderr)
    return network_scorer(lit.to(where), ckpt_file)


def versions_note(saved: dict | None) -> str:
    """What differs between the versions a checkpoint was written with and the running ones
    (its figures may then differ in the last digits), or "" (checkpoints from before seqlm
    recorded them say nothing)."""
    if not saved:
        return ""
    now = versions()
    changed = [f"{k} {saved[k]} (now {now[k]})" for k in now if saved.get(k, now[k]) != now[k]]
    return "was written with " + ", ".join(changed) if changed else ""


def one_line(e: BaseException, limit: int = 300) -> str:
    """What failed, on one line: the exception's type and the start of its message (a shape
    mismatch, a missing key, out of memory), so that a refusal keeps its cause."""
    why = " ".join(f"{type(e).__name__}: {e}".split())
    return why if len(why) <= limit else why[: limit - 3] + "..."


def device_of(device: str | None) -> torch.device:
    """``device=``: ``cuda``, ``cuda:1``, ``cpu``; None (or ``auto``): the first GPU when
    there is one, else the CPU. Refused in one line when it does not exist here."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        where = torch.device(str(device))
    except RuntimeError:
        raise SeqlmError(f"device={device!r} is not a device (cpu, cuda, cuda:1)") from None
    if where.type == "cuda" and not (
        torch.cuda.is_available() and (where.index or 0) < torch.cuda.device_count()
    ):
        raise SeqlmError(f"device={device}: this machine has no such GPU")
    if where.type not in ("cpu", "cuda"):
        raise SeqlmError(f"device={device}: seqlm runs on cpu or cuda")
    return where


# The options each network gained after checkpoints were first written, with the value that
# rebuilds a model from before the option existed (what that code did). Recorded here, never read
# from today's presets: a preset's default may change, an old checkpoint's model may not.
ADDED_OPTIONS = {
    "seqlm.models.RecurrentLM": {
        # AWD-LSTM's regularisers (all off before them)
        **dict.fromkeys(("dropoute", "dropouti", "dropouth", "dropout", "wdrop"), 0.0),
        "alpha": 0.0,
        "beta": 0.0,
        "hidden_sizes": None,
        # the output layer (a full softmax before it)
        "softmax": "full",
        "cutoffs": None,
        "div_value": 4.0,
        # the Mogrifier's own options (unused by every cell before it)
        "mogrify_rounds": 5,
        "mogrify_rank": None,
    },
    "seqlm.models.ClozeLM": {
        "softmax": "full",
        "cutoffs": None,
        "div_value": 4.0,
        "mogrify_rounds": 5,
        "mogrify_rank": None,
    },
}


def complete_model_config(model: dict) -> dict:
    """A checkpoint's model config, complete: the options added since it was written take the
    values recorded for them in ``ADDED_OPTIONS``; any other option it lacks is refused in one
    line (the model cannot be rebuilt as it was)."""
    target = model.get("_target_")
    added = ADDED_OPTIONS.get(target)
    if added is None:
        return model
    full = {**added, **model}
    from hydra.utils import get_class

    missing = [n for n in required(get_class(target)) if n not in full]
    if missing:
        raise SeqlmError(
            f"the checkpoint's model config lacks {', '.join(missing)}, which no seqlm version "
            "recorded a value for"
        )
    return full


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
