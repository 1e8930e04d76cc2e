"""``gradients RUN_DIR... [lags=K]``: gradients through time, ``g_k = ||dℓ_t / ds_{t-k}||``
for k = 0..K, for trained runs and (``model=NAME data=NAME``) an untrained network, as
``seqlm.analysis.gradflow`` defines it. Writes ``gradients.csv`` (run, cell, k, mean, std) and
``gradients.png`` (log-scale, one line per run) into ``out``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from seqlm.analysis.gradflow import summary
from seqlm.analysis.plotting import pyplot
from seqlm.data import prepared_data
from seqlm.errors import SeqlmError
from seqlm.files import written
from seqlm.models import layout_of
from seqlm.scorers import Scorer, family_of, load_scorer, on_data
from seqlm.scorers.network import network_scorer
from seqlm.training.module import LitLM


@dataclass
class Curve:
    run: str
    cell: str
    mean: np.ndarray  # (K+1,)
    std: np.ndarray

    @property
    def label(self) -> str:
        return self.cell if self.run == self.cell else f"{self.cell} ({self.run})"


def untrained(cfg: DictConfig) -> tuple[Scorer, np.ndarray]:
    """A network of ``cfg.model`` with freshly initialised weights, and its split's ids."""
    if family_of(cfg.model) != "network":
        raise SeqlmError(f"model={cfg.model._target_}: n-grams have no hidden state")
    if cfg.get("data") is None:
        raise SeqlmError("model=NAME: an untrained network needs data=NAME for its vocabulary")
    data = prepared_data(cfg.data, layout_of(cfg.model))
    torch.manual_seed(cfg.seed)
    container = OmegaConf.to_container(cfg, resolve=True)
    config = {"model": container["model"], "data": container["data"]}
    return network_scorer(LitLM(config["model"], {}, data.vocab.itos, config)), data.ids[cfg.split]


def curves_of(cfg: DictConfig) -> list[Curve]:
    if cfg.split not in ("valid", "test"):
        raise SeqlmError(f"split={cfg.split!r} is not one of valid, test")
    measured: list[tuple[str, Scorer, np.ndarray]] = []
    for path in cfg.runs:
        data, scorer = on_data(load_scorer(path, device=cfg.get("device")), cfg.get("data"))
        measured.append((Path(path).name, scorer, data.ids[cfg.split]))
    if cfg.get("model") is not None:
        scorer, ids = untrained(cfg)
        measured.append(("untrained", scorer, ids))
    if not measured:
        raise SeqlmError("gradients: give run directories, or model=NAME data=NAME")
    curves = []
    for name, scorer, ids in measured:
        mean, std = summary(scorer.gradient_norms(ids, cfg.lags, cfg.windows))
        cell = scorer.describe().get("model/cell") or scorer.family
        curves.append(Curve(name, cell, mean, std))
    return curves


def plot(curves: list[Curve], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {}  # one colour per cell; an untrained network dotted
    vanished = []  # (k where the curve first is 0, colour): a log axis cannot show 0
    for c in curves:
        colour = colours.setdefault(c.cell, f"C{len(colours)}")
        dotted = c.run.startswith("untrained")
        mean = np.asarray(c.mean, dtype=float)
        shown = np.where(mean > 0, mean, np.nan)
        ax.plot(np.arange(len(mean)), shown, label=c.label, color=colour, ls=":" if dotted else "-")
        zero = np.flatnonzero(mean <= 0)
        if len(zero):
            vanished.append((int(zero[0]), colour))
    ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for k, colour in vanished:  # where a gradient underflowed to exactly 0
        ax.plot([k], [bottom], marker="v", color=colour, clip_on=False)
        ax.annotate(f"0 from k={k}", (k, bottom), textcoords="offset points", xytext=(4, 6),
                    fontsize=7, color=colour)  # fmt: skip
    ax.set_ylim(bottom=bottom)
    ax.set_xlabel("k (steps back)")
    ax.set_ylabel(r"mean $\|\partial \ell_t / \partial s_{t-k}\|$")
    ax.set_title("gradient of the last position's loss through time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with written(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def table(curves: list[Curve]) -> str:
    K = len(curves[0].mean) - 1
    lags = [k for k in (1, 5, 20, 50, K) if k <= K]
    lags = sorted(set(lags))
    head = f"{'run':<24} {'cell':<6} {'g_0':>10} " + " ".join(f"{f'g_{k}/g_0':>10}" for k in lags)
    rows = [
        f"{c.run:<24} {c.cell:<6} {c.mean[0]:>10.3e} "
        + " ".join(f"{c.mean[k] / c.mean[0]:>10.3e}" for k in lags)
        for c in curves
    ]
    return "\n".join([head, *rows])


def write(curves: list[Curve], out: Path) -> None:
    """``gradients.csv`` and ``gradients.png`` in ``out``, and the table on stdout."""
    if (out / "gradients.csv").exists():
        print(f"replacing the gradients.csv and gradients.png of an earlier run in {out}")
    out.mkdir(parents=True, exist_ok=True)
    with written(out / "gradients.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "cell", "k", "mean", "std"])
        for c in curves:
            writer.writerows(
                [c.run, c.cell, k, m, s] for k, (m, s) in enumerate(zip(c.mean, c.std))
            )
    plot(curves, out / "gradients.png")
    print(table(curves))
    print(f"gradients.csv and gradients.png in {out.resolve()}")


def run(cfg: DictConfig) -> list[Curve]:
    curves = curves_of(cfg)
    write(curves, Path(cfg.out))
    return curves
