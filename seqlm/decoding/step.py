"""A language model a decoder can step: batched states from ``<s>``, the next word's
log-probabilities, advance, select (beam pruning and duplication), end of sentence.

    lm = seqlm.load("RUN_DIR")            # a network run, an n-gram run, a model.npz or ARPA file
    state = lm.start(4)                   # 4 states after <s>
    lm.next_log_probs(state)              # (4, V) natural logs, each row sums to one
    lm.token_log_probs(state, tokens)     # (4,) log p(tokens[b] | state b), no V-wide vector
    state = lm.advance(state, tokens)     # each state reads one more token
    state = lm.select(state, keep)        # rows ``keep`` (LongTensor) in order, repeats allowed
    lm.end_log_probs(state)               # (4,) log p(</s> | state)

Ids are the model's vocabulary's (``lm.vocab``: ``<unk>`` is 0, ``<eos>`` = ``</s>`` is 1).
Log-probabilities are float64 tensors on the CPU. Summed over a sentence and its ``</s>`` they
equal ``sentence_logprobs`` of the same model. ``seqlm.adapters`` speaks pyctcdecode's,
ESPnet's and torchaudio's interfaces on top of this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_map

from ngram import NgramLM
from ngram import State as NgramState
from seqlm.data.vocab import Vocab
from seqlm.scorers import Scorer, load_scorer


class StepLM(ABC):
    """The step interface of a loaded model; ``scorer`` is the ``Scorer`` it steps."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.vocab: Vocab = scorer.vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, words: list[str]) -> torch.Tensor:
        """Ids of ``words`` in this model's vocabulary (unknown words: ``<unk>``)."""
        return torch.tensor(self.vocab.encode(words), dtype=torch.long)

    @abstractmethod
    def start(self, batch_size: int = 1) -> Any:
        """``batch_size`` states that have read ``<s>`` only."""

    @abstractmethod
    def next_log_probs(self, state: Any) -> torch.Tensor:
        """(B, V): log p(w | state b) for every word w."""

    @abstractmethod
    def token_log_probs(self, state: Any, tokens: torch.Tensor) -> torch.Tensor:
        """(B,): log p(tokens[b] | state b)."""

    @abstractmethod
    def advance(self, state: Any, tokens: torch.Tensor) -> Any:
        """The states after each has read ``tokens[b]`` (B,)."""

    @abstractmethod
    def select(self, state: Any, index: torch.Tensor) -> Any:
        """The states ``index`` (K,), in that order; an index may repeat (a beam split)."""

    def end_log_probs(self, state: Any) -> torch.Tensor:
        """(B,): log p(``</s>`` | state b), the end-of-sentence score."""
        size = self.batch_size(state)
        return self.token_log_probs(state, torch.full((size,), Vocab.eos_id, dtype=torch.long))

    @abstractmethod
    def batch_size(self, state: Any) -> int:
        """How many states ``state`` holds."""

    @abstractmethod
    def concat(self, states: list[Any]) -> Any:
        """One batch of the states of ``states``, in order (the inverse of selecting rows)."""

    def sentence_log_prob(self, ids: list[int]) -> float:
        """log p of one sentence and its ``</s>``, collected step by step."""
        state, total = self.start(1), 0.0
        for i in ids:
            token = torch.tensor([i])
            total += float(self.token_log_probs(state, token)[0])
            state = self.advance(state, token)
        return total + float(self.end_log_probs(state)[0])


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
        self.net = scorer.net.eval()
        self.device = next(self.net.parameters()).device

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


class NgramStepLM(StepLM):
    """An n-gram model's stateful lookups (``NgramLM``'s states: the state is the context, as
    KenLM's). A batch of single-word queries is one lookup per order, and so is advancing; a
    V-wide distribution overwrites the backed-off unigrams with each context's stored n-grams."""

    def __init__(self, scorer: Scorer):
        super().__init__(scorer)
        self.model: NgramLM = scorer.model
        self.to_model = scorer.to_model  # seqlm id -> the model's id

    def start(self, batch_size: int = 1) -> NgramState:
        return self.model.begin(batch_size, bos=True)

    def token_log_probs(self, state: NgramState, tokens: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(
            self.model.word_logprobs(state, self.to_model[tokens.cpu().numpy()])
        )

    def next_log_probs(self, state: NgramState) -> torch.Tensor:
        return torch.from_numpy(self.model.distributions(state)[:, self.to_model])

    def advance(self, state: NgramState, tokens: torch.Tensor) -> NgramState:
        return self.model.advance(state, self.to_model[tokens.cpu().numpy()])

    def select(self, state: NgramState, index: torch.Tensor) -> NgramState:
        return state.select(index.cpu().numpy())

    def batch_size(self, state: NgramState) -> int:
        return len(state)

    def concat(self, states: list[NgramState]) -> NgramState:
        return NgramState.concat(states)


def load(path: str | Path, arpa_unk: str | None = None) -> StepLM:
    """The step interface of any model seqlm loads: a run directory, a network checkpoint, an
    n-gram ``model.npz`` or an ARPA file (``arpa_unk``: its word for ``<unk>``)."""
    scorer = load_scorer(path, arpa_unk)
    if scorer.family == "ngram":
        return NgramStepLM(scorer)
    if scorer.pseudo:
        scorer.refuse("next-word distribution (generate, decoders)")
    return NetworkStepLM(scorer)
