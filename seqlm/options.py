"""The networks' options as typed, validated configs: one dataclass field per key of
``conf/model/rnn.yaml`` (``RecurrentOptions``) and ``conf/model/birnn.yaml`` (``CellOptions``),
every rule in ``check``. The constructors build one (``RecurrentLM(V, **options)``), ``train``
builds one before reading any data, the command line builds one before Hydra makes a run
directory: the same rules, run from one place (``seqlm.validation``). Nothing here imports
torch: the command line refuses a bad value in a tenth of a second."""

from __future__ import annotations

from dataclasses import dataclass

from seqlm.errors import SeqlmError
from seqlm.validation import Options

# torch's cells and seqlm.models.cells' (tests check the list against them): named here, so that
# the command line checks a network's options without importing torch
CELL_NAMES = ("rnn", "lstm", "gru", "mogrifier", "mingru", "minlstm")
NO_HIDDEN_MATRIX = ("mingru", "minlstm")  # gates that read x_t only: no W_hh to weight-drop
NONLINEARITIES = ("tanh", "relu")
SOFTMAXES = ("full", "adaptive")
AUTO_CUTOFFS = (2_000, 10_000, 50_000)  # frequency ranks; those below V when cutoffs is null


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise SeqlmError(f"model.{key}={value} must be >= 1")


@dataclass(frozen=True, kw_only=True)
class CellOptions(Options):
    """What every network shares: the cell, its sizes, dropout, the output layer."""

    cell: str
    emb_size: int
    hidden_size: int
    num_layers: int
    nonlinearity: str
    emb_dropout: float
    layer_dropout: float
    out_dropout: float
    softmax: str
    cutoffs: list[int] | None
    div_value: float
    mogrify_rounds: int
    mogrify_rank: int | None

    DROPOUTS = ("emb_dropout", "layer_dropout", "out_dropout")

    def check(self) -> None:
        if self.cell not in CELL_NAMES:
            raise SeqlmError(f"model.cell={self.cell!r} is not one of {', '.join(CELL_NAMES)}")
        if self.nonlinearity not in NONLINEARITIES:
            raise SeqlmError(
                f"model.nonlinearity={self.nonlinearity!r} is not one of "
                f"{', '.join(NONLINEARITIES)}"
            )
        for key in ("emb_size", "hidden_size", "num_layers"):
            _positive(key, getattr(self, key))
        for key in self.DROPOUTS:
            p = getattr(self, key)
            if not 0.0 <= p < 1.0:
                raise SeqlmError(f"model.{key}={p} must be in [0, 1)")
        if self.mogrify_rounds < 0:
            raise SeqlmError(f"model.mogrify_rounds={self.mogrify_rounds} must be >= 0")
        if self.mogrify_rank is not None and self.mogrify_rank < 1:
            raise SeqlmError(f"model.mogrify_rank={self.mogrify_rank} must be null or >= 1")
        self._check_softmax()

    def _check_softmax(self) -> None:
        if self.softmax not in SOFTMAXES:
            raise SeqlmError(f"model.softmax={self.softmax!r} is not one of {', '.join(SOFTMAXES)}")
        if self.softmax == "full":
            return
        if not self.div_value >= 1:
            raise SeqlmError(f"model.div_value={self.div_value} must be >= 1")
        cutoffs = self.cutoffs or []
        if any(not isinstance(c, int) or isinstance(c, bool) for c in cutoffs):
            raise SeqlmError(f"model.cutoffs={cutoffs}: cutoffs are integers (frequency ranks)")
        if cutoffs and cutoffs[0] < 2:
            raise SeqlmError(
                f"model.cutoffs={cutoffs}: the first cutoff must be >= 2 (<unk> and <eos> are "
                "in the head)"
            )
        if any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
            raise SeqlmError(f"model.cutoffs={cutoffs} must be strictly increasing")

    def cutoffs_for(self, vocab_size: int) -> list[int]:
        """The cutoffs an adaptive softmax over ``vocab_size`` words uses (``cutoffs``, or
        ``AUTO_CUTOFFS`` below the size when null), the one rule that needs the vocabulary."""
        if self.softmax == "full":
            return []
        if self.cutoffs is None:
            return [c for c in AUTO_CUTOFFS if c < vocab_size]
        if self.cutoffs and self.cutoffs[-1] >= vocab_size:
            raise SeqlmError(
                f"model.cutoffs={self.cutoffs}: {self.cutoffs[-1]} is not below the vocabulary "
                f"size {vocab_size}"
            )
        return list(self.cutoffs)

    @property
    def cell_kwargs(self) -> dict:
        """The keyword arguments of the cell's module beyond its sizes."""
        if self.cell == "rnn":
            return {"nonlinearity": self.nonlinearity}
        if self.cell == "mogrifier":
            return {"rounds": self.mogrify_rounds, "rank": self.mogrify_rank}
        return {}


@dataclass(frozen=True, kw_only=True)
class RecurrentOptions(CellOptions):
    """The left-to-right model's: the shared options, tied weights and AWD-LSTM's
    regularisers (``seqlm.models.regularisers``)."""

    tie_weights: bool
    hidden_sizes: list[int] | None
    dropoute: float
    dropouti: float
    dropouth: float
    dropout: float
    wdrop: float
    alpha: float
    beta: float

    DROPOUTS = (*CellOptions.DROPOUTS, "dropoute", "dropouti", "dropouth", "dropout", "wdrop")

    def check(self) -> None:
        super().check()
        for key in ("alpha", "beta"):
            if getattr(self, key) < 0:
                raise SeqlmError(f"model.{key}={getattr(self, key)} must be >= 0")
        if self.cell in NO_HIDDEN_MATRIX and self.wdrop:
            raise SeqlmError(
                f"model.wdrop={self.wdrop}: model.cell={self.cell} has no hidden-to-hidden "
                "matrix to drop (its gates read x_t only); set model.wdrop=0"
            )
        sizes = self.hidden_sizes
        if sizes is not None and len(sizes) != self.num_layers:
            raise SeqlmError(
                f"model.hidden_sizes={sizes} has {len(sizes)} sizes for "
                f"model.num_layers={self.num_layers}"
            )
        if sizes is not None and any(not isinstance(h, int) or h < 1 for h in sizes):
            raise SeqlmError(f"model.hidden_sizes={sizes}: sizes must be integers >= 1")
        if self.tie_weights and self.emb_size != self.sizes[-1]:
            which = "hidden_sizes[-1]" if sizes is not None else "hidden_size"
            raise SeqlmError(
                f"model.tie_weights=true needs model.emb_size ({self.emb_size}) == "
                f"model.{which} ({self.sizes[-1]})"
            )

    @property
    def sizes(self) -> list[int]:
        """Each layer's size: ``hidden_sizes`` when given, else ``hidden_size`` each."""
        return list(self.hidden_sizes or [self.hidden_size] * self.num_layers)

    @property
    def one_module(self) -> bool:
        """Whether the layers can be one multi-layer module (one fused kernel call)."""
        return self.hidden_sizes is None and self.dropouth == 0 and self.wdrop == 0


# the options of regularisers and dropout: for networks alone (an n-gram refuses them)
REGULARISERS = (*RecurrentOptions.DROPOUTS, "alpha", "beta")

# the networks' config targets and their options, for a check that imports neither
OPTIONS_OF = {"seqlm.models.RecurrentLM": RecurrentOptions, "seqlm.models.ClozeLM": CellOptions}
