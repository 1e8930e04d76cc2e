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
ESPnet's and torchaudio's interfaces on top of this. Each family implements it beside its
``Scorer`` (``Scorer.stepper``): ``scorers.network.NetworkStepLM``,
``scorers.ngram_step.NgramStepLM``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from seqlm.data.vocab import Vocab


class StepLM(ABC):
    """The step interface of a loaded model; ``scorer`` is the ``Scorer`` it steps (the
    interface knows it only by its ``vocab``: the scorers import this module, not the reverse)."""

    def __init__(self, scorer: Any):
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

    # -- one hypothesis at a time: decoders that call the LM once per token ------------------
    def start_one(self) -> Any:
        """One state after ``<s>``, for ``step_one``."""
        return self.start(1)

    def step_one(self, state: Any, token: int) -> tuple[float, Any]:
        """(log p(token | state), the state after it) for one state: what pyctcdecode and
        flashlight-text ask once per hypothesis and token. An n-gram answers it without a
        numpy or torch call (``NgramLM.score_one``); this default steps a batch of one."""
        t = torch.tensor([token])
        return float(self.token_log_probs(state, t)[0]), self.advance(state, t)

    def end_one(self, state: Any) -> float:
        """log p(``</s>`` | state) of a ``step_one`` state."""
        return float(self.end_log_probs(state)[0])

    def sentence_log_prob(self, ids: list[int]) -> float:
        """log p of one sentence and its ``</s>``, collected step by step."""
        state, total = self.start(1), 0.0
        for i in ids:
            token = torch.tensor([i])
            total += float(self.token_log_probs(state, token)[0])
            state = self.advance(state, token)
        return total + float(self.end_log_probs(state)[0])


class MixtureStepLM(StepLM):
    """Step models of one vocabulary interpolated per token with fixed ``weights``,
    ``p(w) = Σ_i λ_i p_i(w)`` (a ``mix`` run): the state is every component's own."""

    def __init__(self, scorer: Any, parts: list[StepLM], weights: Any):
        super().__init__(scorer)
        self.parts = parts  # a zero weight is a component left out: log 0 = -inf
        self.log_weights = torch.log(torch.as_tensor(weights, dtype=torch.float64))

    def _mixed(self, per_part: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(per_part)  # (M, B) or (M, B, V)
        w = self.log_weights.reshape(-1, *[1] * (stacked.dim() - 1))
        return torch.logsumexp(w + stacked, 0)

    def start(self, batch_size: int = 1) -> list:
        return [p.start(batch_size) for p in self.parts]

    def next_log_probs(self, state: list) -> torch.Tensor:
        return self._mixed([p.next_log_probs(s) for p, s in zip(self.parts, state)])

    def token_log_probs(self, state: list, tokens: torch.Tensor) -> torch.Tensor:
        return self._mixed([p.token_log_probs(s, tokens) for p, s in zip(self.parts, state)])

    def advance(self, state: list, tokens: torch.Tensor) -> list:
        return [p.advance(s, tokens) for p, s in zip(self.parts, state)]

    def select(self, state: list, index: torch.Tensor) -> list:
        return [p.select(s, index) for p, s in zip(self.parts, state)]

    def batch_size(self, state: list) -> int:
        return self.parts[0].batch_size(state[0])

    def concat(self, states: list[list]) -> list:
        return [p.concat([s[i] for s in states]) for i, p in enumerate(self.parts)]
