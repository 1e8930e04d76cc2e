"""seqlm's step API (``decoding.step``) in the interfaces of beam-search decoders. Each adapter
imports its decoder's package only when it is built; none is a dependency of seqlm.

- ESPnet: ``ESPnetLM`` has ``BatchScorerInterface``'s methods (``init_state``, ``score``,
  ``batch_score``, ``select_state``, ``final_score``); ``espnet_lm`` makes it an ESPnet
  ``BatchScorerInterface`` for ``BeamSearch(scorers={"lm": ...})``.
- torchaudio: ``TorchaudioLM`` has ``CTCDecoderLM``'s methods (``start``, ``score``,
  ``finish``); ``torchaudio_lm`` makes it a ``CTCDecoderLM`` for ``ctc_decoder(lm=...)``.
- flashlight-text: torchaudio's ``CTCDecoderLM`` is flashlight-text's ``LM`` (torchaudio wraps
  it); ``flashlight_lm`` makes the same class a ``flashlight.lib.text.decoder.LM`` for its
  ``LexiconFreeDecoder`` and ``LexiconDecoder``, with its own ``LMState`` trie. These decoders
  ask the LM once per hypothesis and token; ``seqlm decode`` (``decoding.ctc``) batches them.
- pyctcdecode: ``pyctcdecode_lm`` is an ``AbstractLanguageModel`` (``order``,
  ``get_start_state``, ``score_partial_token``, ``score``) with the semantics of pyctcdecode's
  own KenLM ``LanguageModel`` (alpha, beta, unk_score_offset), for
  ``BeamSearchDecoderCTC(alphabet, language_model=...)``.

Scores are natural logs. A decoder's token list is mapped to the LM's vocabulary by spelling:
its end-of-sentence token to ``</s>``, a word the LM does not know to ``<unk>``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from seqlm.data.vocab import Vocab
from seqlm.decoding.step import StepLM


def token_map(lm: StepLM, tokens: list[str], eos: tuple[str, ...] = ()) -> torch.Tensor:
    """The LM's id of each of a decoder's ``tokens``: ``eos`` spellings are ``</s>``, an
    unknown word is ``<unk>``."""
    stoi = lm.vocab.stoi
    ids = [Vocab.eos_id if t in eos else stoi.get(t, Vocab.unk_id) for t in tokens]
    return torch.tensor(ids, dtype=torch.long)


class ESPnetLM:
    """ESPnet's scorer contract over a ``StepLM``. ESPnet's prefixes ``y`` start with
    ``<sos/eos>``; a state is the LM's state after ``y[:-1]`` (``None`` before the first call),
    and ``score`` reads ``y[-1]`` and gives log p of every next token of ``token_list``, the
    end of sentence being the ``<sos/eos>`` token itself (so ``final_score`` adds nothing, as
    in ESPnet's own LMs).

    Args:
        lm: the model.
        token_list: the decoder's tokens in its id order.
        sos_eos: the decoder's start/end token; ``blank``: the CTC blank, which gets -inf.
    """

    def __init__(
        self, lm: StepLM, token_list: list[str], sos_eos: str = "<sos/eos>", blank: str = "<blank>"
    ):
        self.lm, self.tokens = lm, list(token_list)
        self.ids = token_map(lm, self.tokens, (sos_eos,))
        self.blank = torch.tensor([t == blank for t in self.tokens])

    def init_state(self, x: Any = None) -> None:
        return None

    def _scores(self, state: Any) -> torch.Tensor:
        scores = self.lm.next_log_probs(state)[:, self.ids].float()  # (B, len(token_list))
        return scores.masked_fill(self.blank, float("-inf"))

    def _read(self, last: torch.Tensor, states: list[Any]) -> Any:
        """The states after reading the last tokens (B,) of each prefix."""
        if all(s is None for s in states):
            return self.lm.start(len(states))  # the first call reads <sos>: the LM's <s>
        batch = self.lm.concat(states)
        return self.lm.advance(batch, self.ids[last])

    def score(self, y: torch.Tensor, state: Any, x: Any = None) -> tuple[torch.Tensor, Any]:
        new = self._read(y[-1:].cpu(), [state])
        return self._scores(new)[0], new

    def batch_score(
        self, ys: torch.Tensor, states: list[Any], xs: Any = None
    ) -> tuple[torch.Tensor, list[Any]]:
        new = self._read(ys[:, -1].cpu(), list(states))
        rows = [self.lm.select(new, torch.tensor([i])) for i in range(len(states))]
        return self._scores(new), rows

    def select_state(self, state: Any, i: int, new_id: int | None = None) -> Any:
        return None if state is None else state[i]

    def final_score(self, state: Any) -> float:
        return 0.0


def espnet_lm(lm: StepLM, token_list: list[str], **kwargs) -> Any:
    """``ESPnetLM`` as an ESPnet ``BatchScorerInterface`` (needs ``espnet``)."""
    from espnet.nets.scorer_interface import BatchScorerInterface

    cls = type("SeqlmESPnetLM", (ESPnetLM, BatchScorerInterface), {})
    return cls(lm, token_list, **kwargs)


class TorchaudioLM:
    """torchaudio's ``CTCDecoderLM`` contract over a ``StepLM``: the decoder's states form a
    trie (``state.child(i)`` is the state after word ``i``); this keeps the LM's state of each
    (advanced once) and asks it only for the words the decoder scores.

    Args:
        lm: the model.
        words: the decoder's word dictionary (``lm_dict``) in its id order.
        state_class: the decoder's state type (``CTCDecoderLMState``).
    """

    def __init__(self, lm: StepLM, words: list[str], state_class: type):
        self.lm, self.state_class = lm, state_class
        self.ids = token_map(lm, list(words)).tolist()
        self.known: dict[Any, Any] = {}  # decoder state -> the LM's state
        self.scores: dict[Any, float] = {}  # decoder state -> the score of its last word

    def start(self, start_with_nothing: bool = False) -> Any:
        root = self.state_class()
        self.known[root] = self.lm.start_one()
        return root

    def score(self, state: Any, usr_token_idx: int) -> tuple[Any, float]:
        child = state.child(usr_token_idx)
        if child not in self.scores:  # a trie node is one word after one state: stepped once
            score, self.known[child] = self.lm.step_one(self.known[state], self.ids[usr_token_idx])
            self.scores[child] = score
        return child, self.scores[child]

    def finish(self, state: Any) -> tuple[Any, float]:
        return state, self.lm.end_one(self.known[state])


def torchaudio_lm(lm: StepLM, words: list[str]) -> Any:
    """``TorchaudioLM`` as a torchaudio ``CTCDecoderLM`` (needs ``torchaudio``)."""
    from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

    return _trie_lm(lm, words, CTCDecoderLM, CTCDecoderLMState)


def flashlight_lm(lm: StepLM, words: list[str]) -> Any:
    """``TorchaudioLM`` as a flashlight-text ``LM`` (needs ``flashlight-text``): ``words`` are
    the decoder's tokens in its id order (the lexicon-free decoder's classes, the lexicon
    decoder's word dictionary)."""
    from flashlight.lib.text.decoder import LM, LMState

    return _trie_lm(lm, words, LM, LMState)


def _trie_lm(lm: StepLM, words: list[str], base: type, state_class: type) -> Any:
    """``TorchaudioLM`` subclassing a decoder's C++ ``LM`` (whose ``__init__`` must run)."""

    class SeqlmLM(TorchaudioLM, base):
        def __init__(self):
            base.__init__(self)
            TorchaudioLM.__init__(self, lm, words, state_class)

    return SeqlmLM()


LN10 = math.log(10.0)
AVG_TOKEN_LEN = 6  # pyctcdecode's: a partial word longer than this is penalised in proportion


class PyctcdecodeLM:
    """pyctcdecode's ``LanguageModel`` arithmetic over a ``StepLM``: a word scores
    ``alpha * (log10 p(word | state) [+ unk_score_offset if unknown] [+ log10 p(</s>) at the
    end]) * ln 10 + beta``, and a partial word not a prefix of a known one
    ``unk_score_offset`` (scaled up past ``AVG_TOKEN_LEN`` characters).

    Args:
        lm: the model (its states start at ``<s>``: pyctcdecode's ``score_boundary=True``).
        alpha, beta, unk_score_offset: as pyctcdecode's (0.5, 1.5, -10.0 by default).
        unigrams: the known words (default: the LM's vocabulary).
    """

    def __init__(
        self,
        lm: StepLM,
        alpha: float = 0.5,
        beta: float = 1.5,
        unk_score_offset: float = -10.0,
        unigrams: list[str] | None = None,
    ):
        self.lm, self.alpha, self.beta, self.unk_score_offset = lm, alpha, beta, unk_score_offset
        words = lm.vocab.itos if unigrams is None else unigrams
        self.known = {w for w in words if w in lm.vocab.stoi}
        self.prefixes = {w[:k] for w in self.known for k in range(1, len(w) + 1)}
        # an n-gram's histories are its last order-1 words; a network's are whole
        self._order = getattr(getattr(lm, "model", None), "order", 1 << 20)

    @property
    def order(self) -> int:
        return self._order

    def get_start_state(self) -> Any:
        return self.lm.start_one()

    def score_partial_token(self, partial_token: str) -> float:
        unk = self.unk_score_offset * (partial_token not in self.prefixes)
        if len(partial_token) > AVG_TOKEN_LEN:
            unk = unk * len(partial_token) / AVG_TOKEN_LEN
        return unk

    def score(self, prev_state: Any, word: str, is_last_word: bool = False) -> tuple[float, Any]:
        lp, end_state = self.lm.step_one(prev_state, self.lm.vocab.stoi.get(word, Vocab.unk_id))
        log10 = lp / LN10
        if word not in self.known:
            log10 += self.unk_score_offset
        if is_last_word:
            log10 += self.lm.end_one(end_state) / LN10
        return self.alpha * log10 * LN10 + self.beta, end_state


def pyctcdecode_lm(lm: StepLM, **kwargs) -> Any:
    """``PyctcdecodeLM`` as a pyctcdecode ``AbstractLanguageModel`` (needs ``pyctcdecode``)."""
    from pyctcdecode.language_model import AbstractLanguageModel

    cls = type("SeqlmPyctcdecodeLM", (PyctcdecodeLM, AbstractLanguageModel), {})
    return cls(lm, **kwargs)
