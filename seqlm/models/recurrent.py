"""``RecurrentLM``: the left-to-right recurrent language model of the tutorial.

    x_t = E w_t                          (the word as a vector: an embedding row)
    s_t = f(U x_t + W s_{t-1})           (one layer; a deep RNN stacks them, layer l reading l-1)
    o_t = softmax(V s_t)                 (the softmax itself lives in the loss)

with f a tanh/ReLU (Elman), or the LSTM/GRU cells (tests check torch's cells against the gate
equations written out by hand), or the cells that came after them (``seqlm.models.cells``: the
Mogrifier LSTM, minGRU, minLSTM).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn
from torch.func import functional_call

from seqlm.compat import flat_weight_names, tree_map
from seqlm.models.cells import CELL_CLASSES
from seqlm.models.output import AdaptiveSoftmax, LanguageModel
from seqlm.models.regularisers import (
    LockedDropout,
    activation_penalty,
    contiguous_views,
    dropout_mask,
    embedding_dropout,
)
from seqlm.options import RecurrentOptions

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, **CELL_CLASSES}
PAIRED = ("lstm", *(n for n, c in CELL_CLASSES.items() if c.paired))  # state (h, c)

# (L, B, H), a pair of them for an LSTM or a Mogrifier LSTM; a tuple of each layer's own for a
# ``LayerStack``
State = torch.Tensor | tuple | None


def detach_state(state: State) -> State:
    """Cut the graph at a window boundary (truncated BPTT) but keep the values."""
    return tree_map(torch.Tensor.detach, state)


@functools.cache
def cpu_bf16_lstm() -> bool:
    """Whether this CPU runs ``nn.LSTM`` under bfloat16 autocast. oneDNN's bf16 LSTM needs
    AVX-512 BF16 or AMX; on an AVX2-only CPU it raises "could not create a primitive
    descriptor for the LSTM forward propagation primitive"."""
    lstm = nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 2, 4))[0].float().sum().backward()
        return True
    except RuntimeError:
        return False


BF16_FALLBACK = (
    "trainer.precision=bf16-mixed: this CPU has no bfloat16 LSTM kernel (oneDNN needs "
    "AVX-512 BF16 or AMX), so the LSTM layers run in float32; the embedding and decoder "
    "still run in bfloat16"
)


def run_rnn(
    rnn: nn.Module, x: torch.Tensor, state: State, weights: dict | None = None
) -> tuple[torch.Tensor, State]:
    """``rnn(x, state)``, with ``weights`` in place of its parameters when given. Under
    bfloat16 autocast, torch's own recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) run
    in float32 where autocast would not give them bfloat16 (``float32_recurrence``); the
    cells of ``seqlm.models.cells`` are ordinary operations that autocast casts one by one."""

    def call(x: torch.Tensor, state: State):
        return rnn(x, state) if weights is None else functional_call(rnn, weights, (x, state))

    if not float32_recurrence(rnn, x):
        return call(x, state)
    with torch.autocast(x.device.type, enabled=False):
        return call(x.float(), None if state is None else tree_map(torch.Tensor.float, state))


def float32_recurrence(rnn: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``rnn`` must leave bfloat16 autocast and run in float32:

    - on CUDA, always: torch's autocast wrapper for cuDNN's RNNs casts the input, the weights
      and the state to float16 whatever the autocast dtype (``_cudnn_rnn_cast_reflatten``), so
      ``bf16-mixed`` would run the recurrence in float16 with no loss scaling. float32 (with
      TF32 where cuDNN allows it) is exact; the output layer, the larger matmul, stays bf16;
    - on a CPU without a bfloat16 LSTM kernel (``cpu_bf16_lstm``), for an LSTM (said once, as
      a warning)."""
    device = x.device.type
    if not isinstance(rnn, nn.RNNBase) or device not in ("cuda", "cpu"):
        return False
    if not torch.is_autocast_enabled(device) or torch.get_autocast_dtype(device) != torch.bfloat16:
        return False
    if device == "cuda":
        return True
    fallback = isinstance(rnn, nn.LSTM) and not cpu_bf16_lstm()
    if fallback:
        warnings.warn(BF16_FALLBACK, stacklevel=3)
    return fallback


def make_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, options: dict
) -> nn.Module:
    """``num_layers`` layers of ``cell``; ``options`` as ``CellOptions.cell_kwargs`` makes them."""
    return CELLS[cell](
        input_size,
        hidden_size,
        num_layers,
        batch_first=True,
        dropout=dropout if num_layers > 1 else 0.0,
        **options,
    )


class LayerStack(nn.Module):
    """``len(sizes)`` single-layer recurrent modules, layer ``l`` of ``sizes[l]`` units reading
    layer ``l - 1``; the same call as a multi-layer ``nn.LSTM``: ``(x, state) -> (outputs of
    the last layer, state)``, the state a tuple of each layer's own state.

    Args:
        cell: as ``RecurrentLM``'s; ``options``: its module's (``CellOptions.cell_kwargs``).
        input_size, sizes: the input's size and each layer's.
        dropouth: locked dropout on the outputs of every layer but the last.
        layer_dropout: ordinary dropout there, as ``nn.LSTM(dropout=)`` does it.
        wdrop: DropConnect on every layer's ``weight_hh_l0`` in training.
    """

    def __init__(
        self,
        cell: str,
        options: dict,
        input_size: int,
        sizes: list[int],
        dropouth: float,
        layer_dropout: float,
        wdrop: float,
    ):
        super().__init__()
        ins = [input_size, *sizes[:-1]]
        self.layers = nn.ModuleList(
            make_rnn(cell, i, h, 1, 0.0, options) for i, h in zip(ins, sizes)
        )
        self.between = nn.Sequential(LockedDropout(dropouth), nn.Dropout(layer_dropout))
        self.wdrop = wdrop

    def layer_weights(self, layer: nn.Module) -> dict[str, torch.Tensor] | None:
        """What replaces ``layer``'s parameters for one call: its ``W_hh`` times a fresh mask
        (training with ``wdrop`` only, else ``None``: the parameters themselves)."""
        if not self.training or self.wdrop == 0:
            return None
        fused = isinstance(layer, nn.RNNBase)  # torch's own, run by one kernel
        names = flat_weight_names(layer) if fused else [n for n, _ in layer.named_parameters()]
        weights = {n: getattr(layer, n) for n in names}
        w = weights["weight_hh_l0"]
        weights["weight_hh_l0"] = w * dropout_mask(w, w.shape, self.wdrop)
        if w.is_cuda and fused:  # one buffer, as cuDNN wants it (see contiguous_views)
            weights = dict(zip(names, contiguous_views([weights[n] for n in names])))
        return weights

    def forward(self, x: torch.Tensor, state: tuple | None = None):
        states = []
        for i, layer in enumerate(self.layers):
            if i:
                x = self.between(x)
            s = None if state is None else state[i]
            x, s = run_rnn(layer, x, s, self.layer_weights(layer))
            states.append(s)
        return x, tuple(states)


class RecurrentLM(LanguageModel):
    """Embedding -> ``num_layers`` recurrent layers -> linear decoder. The shipped defaults of
    every argument but ``vocab_size`` are in ``conf/model/rnn.yaml`` (one source).

    Args:
        vocab_size: number of tokens (set from the data, not from config).
        cell: ``rnn`` (Elman), ``lstm``, ``gru``, or ``mogrifier``, ``mingru``, ``minlstm``
            (``seqlm.models.cells``).
        emb_size: size of the word vectors.
        hidden_size: size of the state ``s_t`` of each layer.
        num_layers: stacked layers; more than one is a deep RNN.
        nonlinearity: ``f`` of the Elman cell: ``tanh`` or ``relu``.
        emb_dropout: dropout on the word vectors.
        layer_dropout: dropout between stacked layers.
        out_dropout: dropout on the top layer's states before the decoder.
        tie_weights: decoder shares the embedding matrix (Press & Wolf 2017; needs the last
            layer's size to equal ``emb_size``); with an adaptive softmax, the head's words.
        softmax: the output layer: ``full`` (``nn.Linear`` to V, then softmax) or
            ``adaptive`` (``AdaptiveSoftmax``: a head of frequent words and tail clusters).
        cutoffs: the adaptive softmax's cluster bounds, as frequency ranks (ids); null: those
            of 2000, 10000, 50000 below the vocabulary size.
        div_value: each tail cluster's projection is this many times smaller than the last.
        mogrify_rounds, mogrify_rank: the Mogrifier LSTM's rounds and the rank of its
            matrices (null: full); unused by the other cells.

    AWD-LSTM's regularisers (``seqlm.models.regularisers``; all off at their defaults):
        hidden_sizes: each layer's size (``[1150, 1150, 400]``) instead of ``hidden_size``.
        dropoute: drop whole word types from the embedding matrix.
        dropouti, dropouth, dropout: locked (variational) dropout on the word vectors, between
            layers and on the last layer's outputs.
        wdrop: DropConnect on each layer's hidden-to-hidden matrix.
        alpha, beta: AR and TAR on the last layer's outputs; ``penalty`` holds their sum after
            a training forward pass (the training loss adds it).

    The layers are one multi-layer module (one fused kernel call) unless ``hidden_sizes``,
    ``dropouth`` or ``wdrop`` need them one by one (``LayerStack``).
    """

    layout = "stream"

    Options = RecurrentOptions  # every option's type and rule (``seqlm.options``)

    def __init__(self, vocab_size: int, **options):
        """One keyword per key of ``conf/model/rnn.yaml`` (Hydra builds it from the config),
        all checked by ``RecurrentOptions`` before a layer is built."""
        super().__init__()
        o = RecurrentOptions.of(options)
        cutoffs, sizes = o.cutoffs_for(vocab_size), o.sizes
        cell, emb_size, num_layers, tie_weights = o.cell, o.emb_size, o.num_layers, o.tie_weights
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, sizes[-1]
        self.embedding = nn.Embedding(vocab_size, emb_size)
        kwargs = o.cell_kwargs
        if o.one_module:
            self.rnn = make_rnn(cell, emb_size, sizes[-1], num_layers, o.layer_dropout, kwargs)
        else:
            self.rnn = LayerStack(
                cell, kwargs, emb_size, sizes, o.dropouth, o.layer_dropout, o.wdrop
            )
        if o.softmax == "adaptive":
            tied = self.embedding if tie_weights else None
            self.adaptive = AdaptiveSoftmax(sizes[-1], vocab_size, cutoffs, o.div_value, tied)
        else:
            self.adaptive = None
            self.decoder = nn.Linear(sizes[-1], vocab_size)
        self.emb_drop, self.out_drop = nn.Dropout(o.emb_dropout), nn.Dropout(o.out_dropout)
        self.dropoute, self.alpha, self.beta = o.dropoute, o.alpha, o.beta
        self.lock_in, self.lock_out = LockedDropout(o.dropouti), LockedDropout(o.dropout)
        self.penalty: torch.Tensor | None = None  # AR + TAR of the last training forward
        # As pytorch/examples' word_language_model: small uniform embedding and decoder; the
        # recurrent weights keep torch's U(-1/sqrt(H), 1/sqrt(H)).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.adaptive is None:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
            nn.init.zeros_(self.decoder.bias)
            if tie_weights:
                self.decoder.weight = self.embedding.weight

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """tokens (B, T) -> the top layer's outputs (B, T, H), dropped out as the decoder
        reads them, and the state after the last step. ``state`` is None (zeros) or what the
        previous call returned. In training, ``penalty`` gets AWD-LSTM's AR + TAR."""
        x = embedding_dropout(self.embedding, tokens, self.dropoute, self.training)  # (B, T, E)
        x = self.lock_in(self.emb_drop(x))
        s, state = run_rnn(self.rnn, x, state)  # (B, T, H); state (L, B, H), a pair for LSTM
        dropped = self.out_drop(self.lock_out(s))
        if self.training and (self.alpha or self.beta):
            self.penalty = activation_penalty(s, dropped, self.alpha, self.beta)
        return dropped, state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """V s_t; an adaptive softmax's normalised log-probabilities (scores of the same
        softmax)."""
        if self.adaptive is not None:
            return self.adaptive.log_probs(hidden)
        return self.decoder(hidden)

    def forward(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """tokens (B, T) -> logits (B, T, V) and the state after the last step."""
        hidden, state = self.features(tokens, state)
        return self.logits(hidden), state

    # -- the top layer's s_t inside a state (gradients through time read and splice it) --------
    def _last_layer(self, state: State) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(self.rnn, LayerStack):
            state = state[-1]
        return state if self.cell in PAIRED else (state, None)  # h (L, B, H), c or None

    def top_state(self, state: State) -> torch.Tensor:
        """The top layer's ``s_t`` (B, H) in ``state`` (``h`` for an LSTM)."""
        return self._last_layer(state)[0][-1]

    def with_top_state(self, state: State, top: torch.Tensor) -> State:
        """``state`` with the top layer's ``s_t`` replaced by ``top`` (B, H), so that the next
        step reads that very tensor (and a gradient with respect to it sees every use)."""
        h, c = self._last_layer(state)
        h = torch.cat([h[:-1], top[None]], 0)
        last = h if c is None else (h, c)
        return (*state[:-1], last) if isinstance(self.rnn, LayerStack) else last
