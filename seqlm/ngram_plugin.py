"""The n-gram baselines inside seqlm: fitted on the same ``LMData`` id streams and vocabulary
as the networks, scored on the same targets (every token, each line's ``<eos>`` included,
from a ``<s>`` context at each line start), summed into the same ``Perplexity``.

Boundary rule: each line is a sentence; its context starts with ``<s>``; every word and the
line's ``<eos>`` (= ``</s>``) are predicted. A network reads the stream across line ends, so
it may use the previous sentence; an n-gram never does.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ngram import NgramError, NgramLM, read_arpa, write_arpa
from seqlm.data import LMData
from seqlm.data.tokenize import tokenizer_of
from seqlm.data.vocab import EOS, UNK, Vocab
from seqlm.errors import SeqlmError
from seqlm.metrics import AgreementAccuracy, Perplexity, agreement_summary, summarize


def is_ngram(model_cfg) -> bool:
    return str(model_cfg.get("_target_", "")).startswith("ngram.")


class NgramRun:
    """A fitted or loaded n-gram model, seen through seqlm's vocabulary."""

    pseudo = False

    def __init__(
        self,
        model: NgramLM,
        vocab: Vocab,
        config: dict,
        path: Path | None = None,
        arpa_unk: str | None = None,
    ):
        self.model, self.vocab, self.config, self.path = model, vocab, config, path
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

    def tokenize(self, text: str) -> list[str]:
        return tokenizer_of(self.config)(text)

    def token_logprobs(self, ids: np.ndarray) -> np.ndarray:
        try:
            return self.model.score_ids(self.to_model[np.asarray(ids, dtype=np.int64)])
        except NgramError as e:
            raise SeqlmError(str(e)) from None

    def sentence_logprobs(self, lines: list[list[int]]) -> np.ndarray:
        if not lines:
            return np.zeros(0)
        ids = np.asarray([i for ln in lines for i in [*ln, Vocab.eos_id]], dtype=np.int64)
        lp = self.token_logprobs(ids)
        ends = np.cumsum([len(ln) + 1 for ln in lines])
        return np.add.reduceat(lp, np.concatenate([[0], ends[:-1]]))

    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        """log p(w | <s> prefix) for every seqlm id w."""
        lp = self.model.next_logprobs(self.to_model[np.asarray(prefix, np.int64)].tolist(), True)
        return lp[self.to_model]

    def evaluate(self, data: LMData, splits=("valid", "test")) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for split in splits:
            stage = "val" if split == "valid" else "test"
            ids = data.ids[split]
            lp = self.token_logprobs(ids)
            if not self.model.normalized:
                out[f"{stage}/score"] = float(lp.sum())  # stupid backoff: no perplexity
                out[f"{stage}/tokens"] = len(ids)
                continue
            ppl = Perplexity()
            ppl.update(torch.from_numpy(-lp))
            out.update(summarize(*ppl.compute(), stage))
            extras = data.extras(split)
            if extras:
                at = np.flatnonzero(extras["wrong"] >= 0)
                swapped = ids.astype(np.int64).copy()
                swapped[at] = extras["wrong"][at]
                wrong_lp = self.token_logprobs(swapped)[at]
                acc = AgreementAccuracy()
                acc.update(
                    torch.from_numpy(lp[at] > wrong_lp), torch.from_numpy(extras["distance"][at])
                )
                by_d = acc.compute()
                out.update(agreement_summary(by_d, stage))
                out[f"{stage}/agreement_by_distance"] = by_d
        return {**out, **data.info()}


def train_ngram(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit on the train split, evaluate val and test, write model.npz (+ model.arpa)."""
    started = time.perf_counter()
    data: LMData = instantiate(cfg.data, _convert_="all")
    data.prepare()
    data.vocab.save(run_dir / "vocab.json")
    fit = instantiate(cfg.model, _convert_="all")
    try:
        model = fit(data.ids["train"], data.vocab.itos, unk_id=Vocab.unk_id, eos_id=Vocab.eos_id)
    except NgramError as e:
        raise SeqlmError(f"model: {e}") from None
    train_s = time.perf_counter() - started
    container = OmegaConf.to_container(cfg, resolve=True)
    run = NgramRun(model, data.vocab, container)
    metrics = run.evaluate(data)
    model.save(run_dir / "model.npz")
    # additive, MLE and stupid backoff have no ARPA form; model.npz holds every model exactly
    with contextlib.suppress(NgramError):
        write_arpa(model, run_dir / "model.arpa")
    metrics.update(
        {
            "model/name": "NgramLM",
            "model/cell": f"{model.smoothing}",
            "model/order": model.order,
            "model/params": int(sum(len(k) for k in model.keys)),
            "model/discounts": model.info,
            "time/train_s": train_s,
            "time/total_s": time.perf_counter() - started,
            "train/tokens_per_s": len(data.ids["train"]) / train_s,  # counting and smoothing
            "checkpoint": str(run_dir / "model.npz"),
        }
    )
    return metrics


def load_ngram(path: Path, config: dict | None) -> NgramRun:
    """A run directory with model.npz, a .npz file, or an ARPA file (KenLM's, SRILM's...)."""
    try:
        if path.is_dir():
            path = path / "model.npz"
        model = read_arpa(path) if ".arpa" in path.name else NgramLM.load(path)
    except NgramError as e:
        raise SeqlmError(str(e)) from None
    run_dir = path.parent
    if (run_dir / "vocab.json").exists() and path.suffix == ".npz":
        vocab = Vocab.load(run_dir / "vocab.json")
    else:  # a foreign ARPA file: its own words, <unk> and </s> as seqlm's specials
        vocab = Vocab([UNK, EOS, *[w for w in model.itos if w not in (UNK, EOS, "</s>")]])
    if config is None and (run_dir / "config.yaml").exists() and path.suffix == ".npz":
        config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    return NgramRun(model, vocab, config or {}, path)
