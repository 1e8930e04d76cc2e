"""An n-gram scorer's step API (``seqlm.decoding.step``), apart from ``scorers.ngram`` so that
scoring an n-gram never imports torch; a decoder's tensors come in and go out here."""

from __future__ import annotations

import torch

from ngram import NgramLM
from ngram import State as NgramState
from seqlm.data.vocab import Vocab
from seqlm.decoding.step import StepLM


class NgramStepLM(StepLM):
    """An n-gram model's stateful lookups (``NgramLM``'s states: the state is the context, as
    KenLM's). A batch of single-word queries is one lookup per order, and so is advancing; a
    V-wide distribution overwrites the backed-off unigrams with each context's stored n-grams."""

    def __init__(self, scorer):  # an NgramScorer
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

    # one state at a time: (ctx, avail) tuples, pure Python lookups
    def start_one(self) -> tuple:
        return self.model.begin_one(bos=True)

    def step_one(self, state: tuple, token: int) -> tuple[float, tuple]:
        lp, ctx, avail = self.model.score_one(state[0], state[1], self._word(token))
        return lp, (ctx, avail)

    def end_one(self, state: tuple) -> float:
        return self.model.score_one(state[0], state[1], self._word(Vocab.eos_id))[0]

    def _word(self, token: int) -> int:
        return int(self.to_model[token])
