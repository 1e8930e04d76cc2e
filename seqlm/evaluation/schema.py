"""The keys of ``metrics.json`` and of the loggers, built in this one place and read back only
through it (``compare``, the summary table). What the split figures mean is in
``docs/evaluation.md``; ``seqlm.evaluation.summary.summarize`` makes them.

Every run has ``model/family`` (``network``, ``ngram``, ``mixture``, ``rescore``, ``decode``)
``model/name``; then

- a network: ``model/cell``, ``model/layers``, ``model/hidden_size``, ``model/params``
  (trainable numbers), ``model/softmax`` (``full`` or ``adaptive``), ``model/cutoffs`` (the
  adaptive softmax's cluster bounds in use; empty for a full softmax), ``train/steps``,
  ``train/epochs``, ``train/world_size``, ``train/tokens_per_s`` (training targets per second
  of training, validation included), ``train/precision`` (the Trainer's) and
  ``eval/precision`` (the final figures', always ``32-true``);
- an n-gram: ``model/smoothing``, ``model/order``, ``model/ngrams`` (stored n-grams, all
  orders; ``model/ngrams_by_order`` each), ``model/discounts`` (and any pruning),
  ``count/tokens_per_s`` (training tokens counted and smoothed per second);
- a mixture (``mix``): ``model/components``, ``model/weights`` (EM on validation),
  ``model/em_steps``;
- a rescoring (``rescore``): ``{dev,test}/wer``, ``wer_first_pass``, ``wer_oracle``,
  ``utterances``, ``ref_words``, ``weights/*``, and its first LM's perplexities and ``data/*``;
- a CTC decoding (``decode``): ``{dev,test}/cer``, ``cer_greedy``, ``wer``, ``wer_greedy``,
  ``utterances``, ``ref_chars``, ``ref_words``, ``weights/*``, ``decode/*``, ``time/*``;
- all: ``{val,test}/loss, ppl|pseudo_ppl, bits, tokens``, the ``data/*`` facts,
  ``time/train_s``, ``time/total_s``, ``checkpoint``, and on the built-in corpus
  ``{split}/ppl_floor`` and the agreement figures.

JSON has no NaN or infinity: a non-finite figure (an MLE model's infinite perplexity, the
agreement of a split with no probes) is written, and returned, as ``null``.
"""

from __future__ import annotations

import math
from typing import Any

STAGE_OF = {"valid": "val", "test": "test"}  # a split's name in metric keys
EVAL_PRECISION = "32-true"  # every network's final figures, train's and eval's alike
SPLIT_FIGURES = ("ppl", "pseudo_ppl", "ppl_floor", "loss", "bits", "tokens", "agreement")
SPLIT_FIGURES += ("agreement_far",)


def network_description(model_cfg: dict, net: Any) -> dict[str, Any]:
    """``model/*`` of a network, from its ``model`` config and the network built from it."""
    adaptive = getattr(net, "adaptive", None)
    return {
        "model/family": "network",
        "model/name": str(model_cfg["_target_"]).rsplit(".", 1)[-1],
        "model/cell": model_cfg.get("cell", ""),
        "model/layers": model_cfg.get("num_layers", 1),
        "model/hidden_size": model_cfg.get("hidden_size", 0),
        "model/params": sum(p.numel() for p in net.parameters()),
        "model/softmax": "full" if adaptive is None else "adaptive",
        "model/cutoffs": [] if adaptive is None else adaptive.bounds[:-1],
    }


def ngram_description(smoothing: str, order: int, by_order: list[int], discounts: dict) -> dict:
    """``model/*`` of an n-gram model (``by_order``: stored n-grams of each order)."""
    return {
        "model/family": "ngram",
        "model/name": "NgramLM",
        "model/smoothing": smoothing,
        "model/order": order,
        "model/ngrams": int(sum(by_order)),
        "model/ngrams_by_order": [int(n) for n in by_order],
        "model/discounts": discounts,
    }


def mixture_description(components: list[str], weights: list[float], em_steps: int) -> dict:
    """``model/*`` of a linear interpolation of runs (``mix``)."""
    return {
        "model/family": "mixture",
        "model/name": "Mixture",
        "model/components": components,
        "model/weights": weights,
        "model/em_steps": em_steps,
    }


def data_description(name: str, vocab_size: int, vocab_hash: str) -> dict[str, Any]:
    return {"data/name": name, "data/vocab_size": vocab_size, "data/vocab_hash": vocab_hash}


def run_metrics(
    description: dict[str, Any],
    evaluation: dict[str, Any],
    facts: dict[str, Any],
) -> dict[str, Any]:
    """A finished run's metrics: what the model is, how it scored (``Scorer.evaluate``, which
    includes the data's facts), and how training went (``time/*``, ``train/*``, ``count/*``,
    ``checkpoint``, ``memory/*``). Non-finite floats become ``None``."""
    return finite({**evaluation, **description, **facts})


def finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with every NaN or infinite float replaced by ``None`` (JSON's ``null``)."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()
    }


def is_ngram(metrics: dict[str, Any]) -> bool:
    return metrics.get("model/family") == "ngram"


def model_label(metrics: dict[str, Any]) -> str:
    """A short name of the model: ``3-gram``, ``birnn``, or the cell (``lstm``)."""
    if is_ngram(metrics):
        return f"{metrics.get('model/order')}-gram"
    if metrics.get("model/family") == "mixture":
        return "mix"
    if metrics.get("model/family") in ("rescore", "decode"):
        return metrics["model/family"]
    return "birnn" if metrics.get("model/name") == "ClozeLM" else metrics.get("model/cell", "")


def table_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """One row of ``compare``'s table (missing figures are empty strings)."""
    m, ngram = metrics, is_ngram(metrics)

    def get(key: str) -> Any:
        v = m.get(key)
        return "" if v is None else v

    if m.get("model/family") == "mixture":
        parts = zip(m.get("model/components", []), m.get("model/weights", []))
        cell = " + ".join(f"{w:.2f} {name}" for name, w in parts)
    elif m.get("model/family") in ("rescore", "decode"):
        cell = m.get("model/name", "")  # the LMs
    else:
        cell = get("model/smoothing" if ngram else "model/cell")
    return {
        "model": model_label(m),
        "cell": cell,
        "layers": "" if ngram else get("model/layers"),
        "hidden": "" if ngram else get("model/hidden_size"),
        "size": get("model/ngrams" if ngram else "model/params"),
        "val_ppl": get("val/ppl"),
        "test_ppl": get("test/ppl"),
        "test_pseudo_ppl": get("test/pseudo_ppl"),
        "test_bits": get("test/bits"),
        "test_wer_first_pass": percent(m.get("test/wer_first_pass")),
        "test_wer": percent(m.get("test/wer")),
        "test_cer_greedy": percent(m.get("test/cer_greedy")),
        "test_cer": percent(m.get("test/cer")),
        "train_s": get("time/train_s"),
        "train_tokens_per_s": get("train/tokens_per_s"),
        "count_tokens_per_s": get("count/tokens_per_s"),
        "test_agreement": percent(m.get("test/agreement")),
        "test_agreement_far": percent(m.get("test/agreement_far")),
        "test_ppl_floor": get("test/ppl_floor"),
    }


def percent(rate: Any) -> Any:
    """A rate as a percentage for a table ("" when missing)."""
    return "" if rate is None else 100 * rate


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The headline figures of a run, in the order the summary table prints them."""
    keys = [f"{s}/{f}" for s in ("val", "test") for f in SPLIT_FIGURES]
    keys += ["model/params", "model/ngrams", "time/train_s"]
    return [(k, metrics[k]) for k in keys if k in metrics]


def summary_table(metrics: dict[str, Any]) -> str:
    """The headline numbers as an aligned two-column table."""
    rows = []
    for k, v in summary_rows(metrics):
        if isinstance(v, float):
            v = f"{v:.1f}" if k.startswith(("time/", "model/")) else f"{v:.4f}"
        rows.append((k, "-" if v is None else str(v)))
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v:>12}" for k, v in rows)


def agreement_lines(metrics: dict[str, Any], split: str = "test") -> str:
    """Agreement accuracy by subject-verb distance, one row per distance."""
    by_d = metrics.get(f"{split}/agreement_by_distance")
    if not by_d:
        return ""
    rows = [f"{'distance':>8}  {'accuracy':>8}  {'events':>6}"]
    for d, (c, t) in sorted(by_d.items()):
        rows.append(f"{d:>8}  {c / t:>8.3f}  {t:>6}")
    return "\n".join(rows)
