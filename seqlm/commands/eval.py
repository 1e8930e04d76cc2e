"""``eval ckpt=RUN_DIR|FILE [data=...] [tokens_out=FILE]``: score a trained model (network,
n-gram run, ARPA file) on its data, or on other data with the same vocabulary, exactly as
training's final test does; ``tokens_out`` also writes every target's log-probability.

``cache.size=N`` and ``dynamic.lr=η`` (left-to-right networks) evaluate with a neural cache
and/or dynamic evaluation (``evaluation.test_time``); ``cache.search=true`` /
``dynamic.search=true`` tune their settings on the validation split and apply them, frozen, to
the test split."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import STAGE_OF, summary_table
from seqlm.evaluation.summary import summarize
from seqlm.files import written
from seqlm.runs.rundir import write_metrics
from seqlm.scorers import Scorer, load_scorer, on_data


def run(cfg: DictConfig) -> dict[str, Any]:
    bad = set(cfg.splits) - {"valid", "test"}
    if bad:
        raise SeqlmError(f"splits={list(cfg.splits)}: {sorted(bad)} not among valid, test")
    tokens_out = Path(cfg.tokens_out).expanduser() if cfg.get("tokens_out") else None
    if tokens_out is not None and not tokens_out.parent.is_dir():
        raise SeqlmError(
            f"tokens_out={str(tokens_out)!r}: folder {tokens_out.parent} does not exist"
        )
    cache, dynamic = adaptation(cfg)
    scorer = load_scorer(cfg.ckpt, cfg.get("arpa_unk"), cfg.get("device"))
    data, scorer = on_data(scorer, cfg.get("data"))
    splits = tuple(cfg.splits)
    lps = None
    if cache is None and dynamic is None:
        metrics = scorer.evaluate(data, splits)
    else:
        metrics, lps = adapted_evaluation(scorer, data, splits, cache, dynamic, cfg)
    if cfg.get("out"):
        write_metrics(cfg.out, metrics)
    if tokens_out is not None:
        export_tokens(scorer, data, splits, tokens_out, lps)
    print(summary_table(metrics))
    return metrics


def adaptation(cfg: DictConfig) -> tuple[Any, Any]:
    """The ``Cache`` and ``Dynamic`` settings asked for (``None``: off; ``evaluation.test_time``,
    which needs torch, is imported only then)."""
    c, d = cfg.get("cache") or {}, cfg.get("dynamic") or {}
    if not (c.get("size") or c.get("search") or d.get("lr") or d.get("search")):
        return None, None
    from seqlm.evaluation.test_time import Cache, Dynamic

    cache = None
    if c.get("size") or c.get("search"):
        cache = Cache(c.get("size") or 0, float(c.get("theta")), float(c.get("lambda")))
    dynamic = None
    if d.get("lr") or d.get("search"):
        dynamic = Dynamic(float(d.get("lr") or 0), d.get("method"), float(d.get("decay")))
    return cache, dynamic


def adapted_evaluation(scorer: Scorer, data, splits, cache, dynamic, cfg):
    """Metrics (the usual keys, and ``adapt/*`` settings) and per-split log-probabilities of
    a left-to-right network evaluated with a cache and/or dynamic evaluation."""
    rows, window = data.eval_batch_size, data.bptt
    search = (cfg.cache.get("search"), cfg.dynamic.get("search"))
    if any(search):
        cache, dynamic, tried = scorer.tune_adaptation(
            data.ids["valid"], rows, window, cache, dynamic, *search
        )
        best = min(t["val/loss"] for t in tried)
        chosen = " ".join(str(x) for x in (cache, dynamic) if x is not None)
        base = math.exp(tried[0]["val/loss"])  # the searched methods off (lr 0, lambda 0)
        print(
            f"tuned on valid over {len(tried)} settings, the searched methods off among them: "
            f"{chosen}; val ppl {math.exp(best):.2f} against {base:.2f} without them"
        )
    metrics: dict[str, Any] = {}
    lps = {}
    for split in splits:
        lps[split] = scorer.adapted_logprobs(data.ids[split], rows, window, cache, dynamic)
        metrics.update(summarize(float(-lps[split].sum()), len(lps[split]), STAGE_OF[split]))
    if any(search):
        metrics["adapt/base_val_ppl"] = base
    if cache is not None:
        metrics.update({"adapt/cache_size": cache.size, "adapt/cache_theta": cache.theta})
        metrics["adapt/cache_lambda"] = cache.lam
    if dynamic is not None:
        metrics.update({"adapt/dynamic_lr": dynamic.lr, "adapt/dynamic_method": dynamic.method})
    return {**metrics, **data.info()}, lps


def export_tokens(scorer: Scorer, data, splits: tuple[str, ...], path: Path, lps=None) -> None:
    """A ``.npz`` with, per split, ``{split}``: the natural-log probability of every target in
    order (float64; a pseudo-log-likelihood where ``pseudo`` is true) and ``{split}_ids``: the
    targets. Networks read the split as evaluation does (``data.eval_batch_size`` rows), so
    ``-sum({split}) / len`` is ``{split}/loss`` (docs/evaluation.md). ``lps``: log-probs
    already computed (a cache, dynamic evaluation)."""
    arrays: dict[str, np.ndarray] = {
        "pseudo": np.asarray(scorer.pseudo),
        "family": np.asarray(scorer.family),
        "vocab_hash": np.asarray(data.vocab.digest()),
    }
    for split in splits:
        ids = data.ids[split]
        lp = lps[split] if lps is not None else scorer.token_logprobs(ids, data.eval_batch_size)
        arrays[split] = np.asarray(lp, dtype=np.float64)
        arrays[f"{split}_ids"] = ids
    with written(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)
    print(f"per-token log-probabilities: {path}")
