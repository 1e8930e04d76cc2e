"""``rescore ckpt=RUN_OR_MODEL nbest=NBEST.tsv refs=REFS.tsv dev=0.5``: a recogniser's n-best
lists rescored with one or more language models (``decoding.rescoring``), the weights tuned on the
dev utterances and frozen for the test ones; word error rates of the first pass, the rescoring
and the oracle. Without ``refs`` (or with ``dev=0``), the given ``weights.*`` choose and nothing
is tuned.

The run directory gets ``rescore.json`` (the WERs and weights), ``rescored.tsv`` (each
utterance's chosen hypothesis, copied as it stands in ``nbest``), ``scores.tsv`` (every
hypothesis with its features, so that anyone can recompute the choice), ``metrics.json`` and
``config.yaml``; the loggers get the WERs (and on W&B a table of the worst test utterances).
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from seqlm.decoding import rescoring as rs
from seqlm.errors import SeqlmError
from seqlm.files import write_text
from seqlm.runs.rundir import finish, run_dir_of, write_config
from seqlm.runs.tracking import log_final, make_loggers, wandb_runs
from seqlm.scorers import Scorer, load_scorer

WORST_SHOWN = 20  # test utterances in the W&B table


@dataclass
class Inputs:
    """What the command line asks for, read and checked before any model is loaded."""

    ckpts: list[str]
    nbest: rs.NBest
    refs: dict[str, str] | None
    dev: list[str]
    normalize: str
    unit: str
    weights: np.ndarray | None  # given weights (no refs, or dev=0), else None: tuned


def read_inputs(cfg: DictConfig) -> Inputs:
    ckpts = [str(c) for c in cfg.ckpt] if isinstance(cfg.ckpt, ListConfig) else [str(cfg.ckpt)]
    if not ckpts:
        raise SeqlmError("ckpt=[]: give one language model or several (ckpt=[A,B])")
    if cfg.normalize not in rs.NORMALIZE:
        raise SeqlmError(f"normalize={cfg.normalize!r} is not one of {', '.join(rs.NORMALIZE)}")
    if cfg.unit not in rs.UNITS:
        raise SeqlmError(f"unit={cfg.unit!r} is not one of {', '.join(rs.UNITS)}")
    nbest_path = Path(str(cfg.nbest)).expanduser()
    nbest = rs.read_nbest(nbest_path)
    if cfg.get("refs") is None:
        weights = given_weights(cfg, ckpts, nbest)
        return Inputs(ckpts, nbest, None, [], cfg.normalize, cfg.unit, weights)
    refs_path = Path(str(cfg.refs)).expanduser()
    refs = rs.read_refs(refs_path)
    rs.check_pairing(nbest, refs, nbest_path, refs_path)
    dev = rs.dev_utterances(cfg.dev, refs)
    weights = None if dev else given_weights(cfg, ckpts, nbest)  # no dev part: nothing to tune
    return Inputs(ckpts, nbest, refs, dev, cfg.normalize, cfg.unit, weights)


def given_weights(cfg: DictConfig, ckpts: list[str], nbest: rs.NBest) -> np.ndarray:
    """``weights.lm_old`` (when the n-best list gives the recogniser's LM score apart),
    ``weights.lm`` (one number, or one per LM), ``weights.words``, ``weights.oov``."""
    w = cfg.weights
    lm = list(w.lm) if isinstance(w.lm, ListConfig) else [w.lm] * len(ckpts)
    if len(lm) != len(ckpts):
        raise SeqlmError(f"weights.lm={lm} gives {len(lm)} weights for {len(ckpts)} LMs")
    old = [w.lm_old] if nbest.old_lm is not None else []
    values = [*old, *lm, w.words, w.oov]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise SeqlmError(f"weights.lm_old, lm, words and oov must be numbers: {values}")
    return np.asarray(values, dtype=np.float64)


def lm_features(scorers: list[Scorer], texts: list[str]) -> np.ndarray:
    """(N, K + 1): each LM's ln P of every hypothesis text, and the first LM's OOV count."""
    columns = []
    oov = None
    for scorer in scorers:
        words = [scorer.tokenize(t) for t in texts]
        ids = [scorer.vocab.encode(w) for w in words]
        columns.append(np.asarray(scorer.sentence_logprobs(ids), dtype=np.float64))
        if oov is None:
            oov = [sum(t not in scorer.vocab.stoi for t in w) for w in words]
    return np.column_stack([*columns, np.asarray(oov, dtype=np.float64)])


def build_table(inputs: Inputs, scorers: list[Scorer], utts: list[str]) -> tuple[rs.Table, list]:
    """The features of every hypothesis of ``utts`` (in that order), and per hypothesis its
    (utt, line, text, normalised units). The recogniser's own LM score, when the list gives
    it apart, is the first feature."""
    rows, texts, first, errs, starts, choice, old = [], [], [], [], [], [], []
    nbest = inputs.nbest
    for utt in utts:
        starts.append(len(rows))
        choice.append(len(rows) + nbest.first_choice(utt))
        if nbest.old_lm is not None:
            old.extend(nbest.old_lm[utt])
        ref = reference_units(inputs, utt) if inputs.refs is not None else None
        for hyp, score, line in zip(
            inputs.nbest.hyps[utt], inputs.nbest.first_pass[utt], inputs.nbest.lines[utt]
        ):
            text = rs.normalised(hyp, inputs.normalize)
            unit = rs.units(text, inputs.unit)
            rows.append((utt, line, hyp, unit))
            texts.append(text)
            first.append(score)
            errs.append(rs.errors(ref, unit) if ref is not None else 0)
    lms = lm_features(scorers, texts)  # (N, K) and oov
    words = np.asarray([len(r[3]) for r in rows], dtype=np.float64)
    columns = [np.asarray(old, dtype=np.float64)] if nbest.old_lm is not None else []
    features = np.column_stack([*columns, lms[:, :-1], words, lms[:, -1]])
    units = [r[3] for r in rows]
    table = rs.Table(
        np.asarray(starts), np.asarray(first), features, np.asarray(errs), units, np.asarray(choice)
    )
    return table, rows


def reference_units(inputs: Inputs, utt: str) -> list[str]:
    """What WER counts of ``utt``'s reference, normalised as its hypotheses are."""
    return rs.units(rs.normalised(inputs.refs[utt], inputs.normalize), inputs.unit)


def part_figures(part: str, table: rs.Table, chosen, refs_units) -> dict[str, Any]:
    """``{part}/wer_first_pass``, ``wer``, ``wer_oracle``, ``utterances``, ``ref_words``."""
    first = table.first_choice()

    def wer(index) -> float:
        return rs.corpus_wer(refs_units, [table.units[i] for i in index])

    return {
        f"{part}/wer_first_pass": wer(first),
        f"{part}/wer": wer(chosen),
        f"{part}/wer_oracle": wer(table.oracle()),
        f"{part}/utterances": len(refs_units),
        f"{part}/ref_words": sum(len(r) for r in refs_units),
    }


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    inputs = read_inputs(cfg)  # every input checked before the models load
    scorers = [load_scorer(c, cfg.get("arpa_unk"), cfg.get("device")) for c in inputs.ckpts]
    for scorer in scorers:
        if scorer.pseudo:
            scorer.refuse("probabilities of text to rescore hypotheses with")
    loaded = time.perf_counter()
    utts = list(inputs.refs) if inputs.refs is not None else inputs.nbest.utts
    dev = set(inputs.dev)
    parts = {"dev": [u for u in utts if u in dev], "test": [u for u in utts if u not in dev]}
    tables, rows = {}, {}
    for part, members in parts.items():
        if members:
            tables[part], rows[part] = build_table(inputs, scorers, members)
    scored = time.perf_counter()
    trace: list[dict] = []
    weights = inputs.weights
    old = int(inputs.nbest.old_lm is not None)  # the recogniser's LM weight comes first
    if weights is None:  # references and a dev part: tune on it
        dev = tables["dev"]
        n_weighted = old + len(scorers)  # the non-negative weights
        grids = rs.grids(dev, n_weighted)
        start = np.zeros(len(grids))
        start[:old] = 1.0  # the recogniser's LM as it is: its first pass, near enough
        weights, trace = rs.tune(dev, grids, joint=(old, n_weighted), start=start)
        signed = [k >= n_weighted for k in range(len(grids))]
        weights, more = rs.refine(dev, weights, signed, rs.scales(dev), cfg.restarts, cfg.seed)
        trace += more
    metrics: dict[str, Any] = {}
    chosen = {p: t.choose(weights) for p, t in tables.items()}
    if inputs.refs is not None:
        for part, table in tables.items():
            refs_units = [reference_units(inputs, u) for u in parts[part]]
            metrics.update(part_figures(part, table, chosen[part], refs_units))
    metrics.update(lm_figures(inputs.ckpts[0]))
    metrics.update(
        {
            **({"weights/lm_old": float(weights[0])} if old else {}),
            "weights/lm": float(weights[old]) if len(scorers) == 1 else weights[old:-2].tolist(),
            "weights/words": float(weights[-2]),
            "weights/oov": float(weights[-1]),
            "model/family": "rescore",
            "model/name": "+".join(Path(c).name for c in inputs.ckpts),
            "rescore/lms": inputs.ckpts,
            "rescore/normalize": inputs.normalize,
            "rescore/unit": inputs.unit,
            "rescore/hypotheses": int(sum(len(t.first_pass) for t in tables.values())),
            "time/load_s": loaded - started,
            "time/score_s": scored - loaded,
            "time/total_s": time.perf_counter() - started,
        }
    )
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    write_outputs(run_dir, cfg, metrics, trace, tables, rows, chosen, weights, bool(old))
    print(wer_table(metrics), flush=True)  # the result first: W&B's start-up takes seconds
    loggers = make_loggers(cfg, run_dir)
    log_worst(loggers, tables.get("test"), rows.get("test"), chosen.get("test"), inputs)
    log_final(loggers, OmegaConf.to_container(cfg, resolve=True), metrics)
    return finish(run_dir, metrics)


def wer_table(metrics: dict[str, Any]) -> str:
    """The WERs of each part (first pass, rescored, oracle) and the weights, for the terminal."""
    columns = [("first pass", "wer_first_pass"), ("rescored", "wer"), ("oracle", "wer_oracle")]
    lines = rs.rates_table(metrics, columns)
    lm = metrics["weights/lm"]
    lm = ", ".join(f"{w:.4g}" for w in lm) if isinstance(lm, list) else f"{lm:.4g}"
    words, oov = metrics["weights/words"], metrics["weights/oov"]
    old = f"lm_old {metrics['weights/lm_old']:.4g}, " if "weights/lm_old" in metrics else ""
    lines.append(f"weights: {old}lm {lm}, words {words:.4g}, oov {oov:.4g}")
    return "\n".join(lines)


def lm_figures(ckpt: str) -> dict[str, Any]:
    """The first LM's perplexities and data facts, from its run's metrics.json (when it is a
    run directory), so that ``compare`` shows the word error rate beside the perplexity."""
    path = Path(ckpt).expanduser()
    path = path if path.is_dir() else path.parent
    if path.name == "checkpoints":  # RUN/checkpoints/best.ckpt: the run is the folder above
        path = path.parent
    if not (path / "metrics.json").is_file():
        return {}
    lm = json.loads((path / "metrics.json").read_text())
    return {k: v for k, v in lm.items() if k.startswith(("data/", "val/ppl", "test/ppl"))}


def write_outputs(run_dir, cfg, metrics, trace, tables, rows, chosen, weights, old) -> None:
    """rescore.json, rescored.tsv and scores.tsv, each written whole or not at all."""
    write_config(run_dir, cfg)
    n_lms = len(weights) - 2  # the recogniser's LM counted
    new = n_lms - old
    lm_names = ["lm"] if new == 1 else [f"lm{k + 1}" for k in range(new)]
    base = ["am", "lm_old"] if old else ["first_pass"]
    head = ["utt", "part", "line", *base, *lm_names, "words", "oov", "score", "errors"]
    scores = io.StringIO()
    out = csv.writer(scores, delimiter="\t", lineterminator="\n")
    out.writerow([*head, "chosen", "hypothesis"])
    picked: dict[str, str] = {}
    for part, table in tables.items():
        total = table.scores(weights)
        best = set(chosen[part].tolist())
        for i, (utt, line, hyp, _) in enumerate(rows[part]):
            if i in best:
                picked[utt] = hyp
            numbers = [table.first_pass[i], *table.features[i], total[i]]
            cells = [f"{v:.6f}" for v in numbers]
            cells[1 + n_lms : 3 + n_lms] = [str(int(v)) for v in table.features[i, n_lms:]]
            errors = str(int(table.errors[i]))
            out.writerow([utt, part, line, *cells, errors, int(i in best), hyp])
    write_text(run_dir / "scores.tsv", scores.getvalue())
    write_text(run_dir / "rescored.tsv", "".join(f"{u}\t{h}\n" for u, h in picked.items()))
    record = {k: v for k, v in metrics.items() if not k.startswith("model/")}
    write_text(run_dir / "rescore.json", json.dumps({**record, "search": trace}, indent=2) + "\n")


def log_worst(loggers, table, rows, chosen, inputs: Inputs) -> None:
    """A W&B table of the test utterances whose chosen hypothesis has the most errors."""
    if table is None or inputs.refs is None:
        return
    runs = wandb_runs(loggers)
    if not runs:
        return
    import wandb

    worst = sorted(chosen.tolist(), key=lambda i: -table.errors[i])[:WORST_SHOWN]
    data = [[rows[i][0], inputs.refs[rows[i][0]], rows[i][2], int(table.errors[i])] for i in worst]
    for run in runs:
        cols = ["utt", "reference", "chosen", "errors"]
        run.log({"test/worst_utterances": wandb.Table(columns=cols, data=data)})
