"""The n-gram baselines inside seqlm: fitted on the same ``LMData`` id streams and vocabulary
as the networks, scored on the same targets, summed into the same ``Perplexity``.

Boundary rule (``docs/evaluation.md``): each line is a sentence; its context starts with
``<s>``; every word and the line's ``<eos>`` (= ``</s>``) are predicted. A network reads the
stream across line ends, so it may use the previous sentence; an n-gram never does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from ngram import NgramError, NgramLM, read_arpa, write_arpa
from seqlm.data.vocab import EOS, UNK, Vocab
from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import STAGE_OF, data_description, ngram_description
from seqlm.evaluation.summary import agreement_counts, agreement_summary, summarize
from seqlm.scorers import Scorer


class NgramScorer(Scorer):
    """A fitted or loaded n-gram model, seen through seqlm's vocabulary. ``foreign``: an ARPA
    file from another tool, whose words are matched by spelling to a data's vocabulary
    (``for_data``); ``arpa_unk`` names its word for the data's ``<unk>``."""

    family = "ngram"
    kind = "an n-gram model"

    def __init__(
        self,
        model: NgramLM,
        vocab: Vocab,
        config: dict,
        path: Path | None = None,
        foreign: bool = False,
        arpa_unk: str | None = None,
    ):
        super().__init__(vocab, config, path)
        self.model, self.foreign, self.arpa_unk = model, foreign, arpa_unk
        stoi = {w: i for i, w in enumerate(model.itos)}
        for w in (EOS, "</s>"):
            stoi.setdefault(w, model.eos_id)
        if arpa_unk is not None:  # e.g. KenLM models of PTB, whose <unk> was renamed
            if arpa_unk not in stoi:
                raise SeqlmError(f"arpa_unk={arpa_unk!r} is not a word of {path}")
            stoi[UNK] = stoi[arpa_unk]
        missing = [w for w in vocab.itos[2:] if w not in stoi]
        if missing:
            raise SeqlmError(
                f"{path or 'the n-gram model'}: {len(missing)} words of the data's "
                f"vocabulary are not in it (e.g. {missing[:3]}); scores would not "
                "be comparable"
            )
        # seqlm id -> model id (the identity for a model fitted by seqlm)
        self.to_model = np.asarray([stoi.get(w, model.unk_id) for w in vocab.itos], np.int64)

    def for_data(self, data) -> NgramScorer:
        if not self.foreign:
            return super().for_data(data)
        return NgramScorer(self.model, data.vocab, self.config, self.path, True, self.arpa_unk)

    def token_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        try:
            return self.model.score_ids(self.to_model[np.asarray(ids, dtype=np.int64)])
        except NgramError as e:
            raise SeqlmError(str(e)) from None

    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        """log p(w | <s> prefix) for every seqlm id w."""
        state = self.model.state_after(self.to_model[np.asarray(prefix, np.int64)], bos=True)
        return self.model.distributions(state)[0, self.to_model]

    def stepper(self):
        from seqlm.scorers.ngram_step import NgramStepLM  # torch, only for a decoder

        return NgramStepLM(self)

    def line_ngram_lengths(self, lines: list[list[int]]) -> list[np.ndarray]:
        ids = np.asarray([i for ln in lines for i in [*ln, Vocab.eos_id]], np.int64)
        ends = np.cumsum([len(ln) + 1 for ln in lines])[:-1]
        return np.split(self.model.ngram_lengths(self.to_model[ids]), ends) if lines else []

    def evaluate(self, data, splits=("valid", "test")) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for split in splits:
            stage, ids = STAGE_OF[split], data.ids[split]
            lp = self.token_logprobs(ids)
            if not self.model.normalized:
                out[f"{stage}/score"] = float(lp.sum())  # stupid backoff: no perplexity
                out[f"{stage}/tokens"] = len(ids)
                continue
            out.update(summarize(float(-lp.sum()), len(lp), stage))
            out.update(self._agreement(data, split, stage, ids, lp))
        return {**out, **data.info()}

    def _agreement(self, data, split: str, stage: str, ids, lp) -> dict[str, Any]:
        """Right against wrong verb form at every probe of the built-in corpus."""
        extras = data.extras(split)
        if not extras:
            return {}
        at = np.flatnonzero(extras["wrong"] >= 0)
        swapped = ids.astype(np.int64).copy()
        swapped[at] = extras["wrong"][at]
        wrong_lp = self.token_logprobs(swapped)[at]
        by_d = agreement_counts(lp[at] > wrong_lp, extras["distance"][at])
        return {**agreement_summary(by_d, stage), f"{stage}/agreement_by_distance": by_d}

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {
            **ngram_description(m.smoothing, m.order, [len(k) for k in m.keys], m.info),
            **data_description(
                self.config.get("data", {}).get("name", ""), len(self.vocab), self.vocab.digest()
            ),
        }

    def save(self, run_dir: Path, arpa: bool = True) -> Path:
        """``model.npz`` (exact, any smoothing) and, for the backoff-form methods and if
        ``arpa``, ``model.arpa``; returns the npz's path."""
        try:
            self.model.save(run_dir / "model.npz")
            # additive, MLE and stupid backoff have no ARPA form; model.npz holds them exactly
            if arpa and self.model.has_arpa_form:
                write_arpa(self.model, run_dir / "model.arpa")
        except NgramError as e:  # a full disk, a read-only folder: one line naming the file
            raise SeqlmError(str(e)) from None
        return run_dir / "model.npz"


def fit_ngram(fit: Any, data, config: dict) -> NgramScorer:
    """``fit`` (the instantiated ``model`` config: ``NgramLM.fit_ids`` with its options) on
    ``data``'s training ids."""
    try:
        model = fit(data.ids["train"], data.vocab.itos, unk_id=Vocab.unk_id, eos_id=Vocab.eos_id)
    except NgramError as e:
        raise SeqlmError(f"model: {e}") from None
    return NgramScorer(model, data.vocab, config)


def load_ngram(path: Path, arpa_unk: str | None = None) -> NgramScorer:
    """A run directory with model.npz, a ``.npz`` file, or an ARPA file (KenLM's, SRILM's...);
    an ARPA file's words become a vocabulary until ``for_data`` matches them to a data's, with
    ``arpa_unk`` as the file's word for the data's ``<unk>``."""
    foreign = ".arpa" in path.name
    try:
        if path.is_dir():
            path = path / "model.npz"
        model = read_arpa(path) if foreign else NgramLM.load(path)
    except NgramError as e:
        raise SeqlmError(str(e)) from None
    run_dir = path.parent
    if path.suffix == ".npz" and (run_dir / "vocab.json").exists():
        vocab = Vocab.load(run_dir / "vocab.json")
        config = {}
        if (run_dir / "config.yaml").exists():
            config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
        return NgramScorer(model, vocab, config, path)
    # a foreign file: its own words, with <unk> and </s> as seqlm's specials
    vocab = Vocab([UNK, EOS, *[w for w in model.itos if w not in (UNK, EOS, "</s>")]])
    return NgramScorer(model, vocab, {}, path, foreign, arpa_unk)
