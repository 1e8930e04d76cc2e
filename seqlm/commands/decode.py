"""``decode ckpt=LM posteriors=DIR tokens=tokens.txt refs=refs.tsv dev=0.5 unit=char``: a CTC
recogniser's per-frame log-posteriors (OCR, speech) decoded by prefix beam search fused with a
language model (``decoding.ctc``): ``ln P_ctc + weights.lm ln P_LM + weights.units units``. The
weights are tuned on the dev utterances (their CER; WER with ``unit=word``) and frozen for the
test ones; without ``refs`` (or with ``dev=0``) the given ``weights.*`` decide. Any model seqlm
loads is an LM here: a network, an n-gram, an ARPA file, a ``mix`` run; ``ckpt=null`` decodes
with the CTC model alone.

The run directory gets ``decode.json`` (CER and WER of the greedy best path and of the fused
search per part, the weights, the times, every point of the weight search), ``decoded.tsv``
(``utt<TAB>greedy<TAB>fused``, one line per utterance), ``metrics.json`` and ``config.yaml``;
the loggers get the figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from seqlm.decoding import ctc
from seqlm.decoding import rescoring as rs
from seqlm.errors import SeqlmError
from seqlm.files import write_text
from seqlm.runs.rundir import finish, run_dir_of, write_config
from seqlm.runs.tracking import log_final, make_loggers
from seqlm.scorers import load_scorer

MAX_SWEEPS = 4


@dataclass
class Inputs:
    """What the command line asks for, read and checked before any model is loaded."""

    alphabet: ctc.Alphabet
    posteriors: dict[str, np.ndarray]
    refs: dict[str, str] | None
    dev: list[str]
    search: ctc.Search
    tuned: bool  # weights searched on dev (else the given ones)


def number(cfg: DictConfig, key: str, kind: type = float) -> Any:
    """The config's ``key``, refused in one line unless a number (an integer for ``int``)."""
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, int) if kind is int else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        raise SeqlmError(f"{key}={value!r} must be {'an integer' if kind is int else 'a number'}")
    return value


def read_inputs(cfg: DictConfig) -> Inputs:
    if cfg.unit not in ctc.UNITS:
        raise SeqlmError(f"unit={cfg.unit!r} is not one of {', '.join(ctc.UNITS)}")
    if cfg.normalize not in rs.NORMALIZE:
        raise SeqlmError(f"normalize={cfg.normalize!r} is not one of {', '.join(rs.NORMALIZE)}")
    for key in ("beam", "topk", "batch"):
        if number(cfg, key, int) < 1:
            raise SeqlmError(f"{key}={cfg[key]} must be 1 or more")
    search = ctc.Search(
        beam=cfg.beam,
        topk=cfg.topk,
        prune=float(number(cfg, "prune")),
        threshold=float(number(cfg, "threshold")),
        alpha=float(number(cfg, "weights.lm")),
        beta=float(number(cfg, "weights.units")),
        gamma=float(number(cfg, "weights.oov")),
    )
    for key in ("tune.lm", "tune.units"):
        values = OmegaConf.select(cfg, key)
        if not values or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise SeqlmError(f"{key}={values} must be a list of numbers")
    blank = number(cfg, "blank", int)
    alphabet = ctc.read_tokens(Path(str(cfg.tokens)).expanduser(), blank)
    post_path = Path(str(cfg.posteriors)).expanduser()
    posteriors = ctc.read_posteriors(post_path, len(alphabet))
    if cfg.get("refs") is None:
        return Inputs(alphabet, posteriors, None, [], search, False)
    refs_path = Path(str(cfg.refs)).expanduser()
    refs = rs.read_refs(refs_path)
    for utt in posteriors:
        if utt not in refs:
            raise SeqlmError(f"{refs_path}: no reference for utterance {utt!r} ({post_path})")
    for utt in refs:
        if utt not in posteriors:
            raise SeqlmError(f"{post_path}: utterance {utt!r} of {refs_path} has no posteriors")
    dev = rs.dev_utterances(cfg.dev, refs)
    return Inputs(alphabet, posteriors, refs, dev, search, bool(dev))


def decode_all(
    decoder: ctc.Decoder, inputs: Inputs, utts: list[str], search: ctc.Search, batch: int
) -> dict[str, ctc.Hypothesis]:
    """The fused hypothesis of each of ``utts``, ``batch`` utterances searched together
    (utterances of similar length side by side: a batch runs as long as its longest)."""
    order = sorted(utts, key=lambda u: len(inputs.posteriors[u]))
    out = {}
    for start in range(0, len(order), batch):
        group = order[start : start + batch]
        hyps = decoder.decode([inputs.posteriors[u] for u in group], search)
        out.update(zip(group, hyps))
    return out


def texts(inputs: Inputs, hyps: dict[str, ctc.Hypothesis]) -> dict[str, str]:
    return {u: inputs.alphabet.text(h.labels) for u, h in hyps.items()}


def error_rate(refs: list[str], hyps: list[str], unit: str, normalize: str) -> float:
    """Corpus CER (``char``: characters, white space not counted) or WER (``word``): all
    edits over all reference units, each side normalised alike (jiwer's counts)."""
    ref_units = [rs.units(rs.normalised(r, normalize), unit) for r in refs]
    hyp_units = [rs.units(rs.normalised(h, normalize), unit) for h in hyps]
    total = sum(map(len, ref_units))
    if total == 0:
        raise SeqlmError(f"the references hold no {'characters' if unit == 'char' else 'words'}")
    return sum(rs.errors(r, h) for r, h in zip(ref_units, hyp_units)) / total


def part_figures(part: str, inputs: Inputs, utts, greedy, fused, normalize) -> dict[str, Any]:
    """``{part}/cer``, ``cer_greedy``, ``wer``, ``wer_greedy``, ``utterances``,
    ``ref_chars``, ``ref_words``."""
    refs = [inputs.refs[u] for u in utts]
    out: dict[str, Any] = {}
    for unit, name in (("char", "cer"), ("word", "wer")):
        out[f"{part}/{name}"] = error_rate(refs, [fused[u] for u in utts], unit, normalize)
        out[f"{part}/{name}_greedy"] = error_rate(refs, [greedy[u] for u in utts], unit, normalize)
    out[f"{part}/utterances"] = len(utts)
    out[f"{part}/ref_chars"] = sum(len(rs.units(rs.normalised(r, normalize), "char")) for r in refs)
    out[f"{part}/ref_words"] = sum(len(rs.normalised(r, normalize).split()) for r in refs)
    return out


def tune(decoder, inputs: Inputs, cfg: DictConfig) -> tuple[ctc.Search, list[dict]]:
    """The weights with the lowest dev error rate (CER, or WER with ``unit=word``). First a
    joint search of a coarse 3 x 3 grid (the quartiles of ``tune.lm`` and of the positive
    ``tune.units``): the LM weight and the unit bonus only help together, an LM alone
    prefers deleting; then coordinate descent over the whole lists from the best point so
    far (the given weights included): each weight in turn takes the value of its list with
    the lowest rate, the other held, until a sweep changes nothing. A point replaces the
    current one only if strictly better, so of tied points the first found stays. Every
    point decoded is in the trace."""
    unit, tried = ("word" if cfg.unit == "word" else "char"), {}
    refs = [inputs.refs[u] for u in inputs.dev]

    def rate(search: ctc.Search) -> float:
        point = (search.alpha, search.beta)
        if point not in tried:
            fused = texts(inputs, decode_all(decoder, inputs, inputs.dev, search, cfg.batch))
            tried[point] = error_rate(refs, [fused[u] for u in inputs.dev], unit, cfg.normalize)
        return tried[point]

    search = inputs.search
    lm_values = [0.0] if decoder.lm is None else [float(v) for v in cfg.tune.lm]
    unit_values = [float(v) for v in cfg.tune.units]
    best = rate(search)
    for a in quartiles([v for v in lm_values if v > 0]) or [search.alpha]:
        for b in quartiles([v for v in unit_values if v > 0]) or [search.beta]:
            trial = replace(search, alpha=a, beta=b)
            if rate(trial) < best:
                best, search = rate(trial), trial
    for _ in range(MAX_SWEEPS):
        changed = False
        for field, values in (("alpha", lm_values), ("beta", unit_values)):
            for v in values:
                trial = replace(search, **{field: v})
                r = rate(trial)
                if r < best:
                    best, search, changed = r, trial, True
        if not changed:
            break
    trace = [{"lm": a, "units": b, "dev_error": r} for (a, b), r in tried.items()]
    return search, trace


def quartiles(values: list[float]) -> list[float]:
    """The values at a quarter, half and three quarters of ``values`` sorted (fewer when
    there are fewer)."""
    v = sorted(set(values))
    return sorted({v[int(q * (len(v) - 1) + 0.5)] for q in (0.25, 0.5, 0.75)}) if v else []


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    inputs = read_inputs(cfg)  # every input checked before the model loads
    lm = None
    if cfg.get("ckpt") is not None:
        scorer = load_scorer(str(cfg.ckpt), cfg.get("arpa_unk"), cfg.get("device"))
        if scorer.pseudo:
            scorer.refuse("left-to-right probabilities a decoder can step")
        lm = scorer.stepper()
    decoder = ctc.Decoder(inputs.alphabet, lm, cfg.unit)
    loaded = time.perf_counter()
    if lm is None:  # no LM: its weight is 0, not the given one that nothing reads
        inputs.search = replace(inputs.search, alpha=0.0)
    search, trace = inputs.search, []
    if inputs.tuned:
        search, trace = tune(decoder, inputs, cfg)
    tuned = time.perf_counter()
    utts = list(inputs.posteriors)
    calls, lm_s = decoder.calls, decoder.lm_seconds  # the final decoding's own, below
    fused_hyps = decode_all(decoder, inputs, utts, search, cfg.batch)
    decoded = time.perf_counter()
    fused = texts(inputs, fused_hyps)
    blank = inputs.alphabet.blank
    greedy = {u: inputs.alphabet.text(ctc.greedy(inputs.posteriors[u], blank)) for u in utts}
    metrics: dict[str, Any] = {}
    if inputs.refs is not None:
        dev = set(inputs.dev)
        parts = {"dev": [u for u in utts if u in dev], "test": [u for u in utts if u not in dev]}
        for part, members in parts.items():
            if members:
                metrics.update(part_figures(part, inputs, members, greedy, fused, cfg.normalize))
    lm_name = Path(str(cfg.ckpt)).name if cfg.get("ckpt") is not None else "none"
    frames = sum(len(inputs.posteriors[u]) for u in utts)
    metrics.update(
        {
            "weights/lm": search.alpha,
            "weights/units": search.beta,
            "weights/oov": search.gamma,
            "model/family": "decode",
            "model/name": lm_name,
            "decode/lm": str(cfg.ckpt) if cfg.get("ckpt") is not None else None,
            "decode/unit": cfg.unit,
            "decode/beam": search.beam,
            "decode/topk": search.topk,
            "decode/prune": search.prune,
            "decode/threshold": search.threshold,
            "decode/classes": len(inputs.alphabet),
            "decode/utterances": len(utts),
            "decode/frames": frames,
            "decode/lm_calls": decoder.calls - calls,
            "time/load_s": loaded - started,
            "time/tune_s": tuned - loaded,
            "time/decode_s": decoded - tuned,
            "time/ms_per_utterance": 1000 * (decoded - tuned) / max(len(utts), 1),
            "time/lm_share": (decoder.lm_seconds - lm_s) / max(decoded - tuned, 1e-9),
            "time/total_s": time.perf_counter() - started,
        }
    )
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    write_config(run_dir, cfg)
    write_text(
        run_dir / "decoded.tsv",
        "utt\tgreedy\tfused\n" + "".join(f"{u}\t{greedy[u]}\t{fused[u]}\n" for u in utts),
    )
    record = {k: v for k, v in metrics.items() if not k.startswith("model/")}
    write_text(run_dir / "decode.json", json.dumps({**record, "search": trace}, indent=2) + "\n")
    print(error_table(metrics), flush=True)
    loggers = make_loggers(cfg, run_dir)
    log_final(loggers, OmegaConf.to_container(cfg, resolve=True), metrics)
    return finish(run_dir, metrics)


def error_table(metrics: dict[str, Any]) -> str:
    """CER and WER of each part, greedy and fused, and the weights, for the terminal."""
    columns = [("CER greedy", "cer_greedy"), ("CER fused", "cer")]
    lines = rs.rates_table(metrics, [*columns, ("WER greedy", "wer_greedy"), ("WER fused", "wer")])
    ms, share = metrics["time/ms_per_utterance"], metrics["time/lm_share"]
    lines.append(
        f"weights: lm {metrics['weights/lm']:.4g}, units {metrics['weights/units']:.4g}; "
        f"{ms:.1f} ms per utterance, {100 * share:.0f}% of it in the LM"
    )
    return "\n".join(lines)
