"""``RecurrentLM``: the left-to-right recurrent language model of the tutorial.

    x_t = E w_t                          (the word as a vector: an embedding row)
    s_t = f(U x_t + W s_{t-1})           (one layer; a deep RNN stacks them, layer l reading l-1)
    o_t = softmax(V s_t)                 (the softmax itself lives in the loss)

with f a tanh/ReLU (Elman), or the LSTM/GRU cells (tests check torch's cells against the gate
equations written out by hand).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from seqlm.errors import SeqlmError

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
NONLINEARITIES = ("tanh", "relu")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def detach_state(state: State) -> State:
    """Cut the graph at a window boundary (truncated BPTT) but keep the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


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


def run_rnn(rnn: nn.Module, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """``rnn(x, state)``; an LSTM under CPU bfloat16 autocast that this CPU cannot run in
    bfloat16 runs in float32 instead (said once, as a warning)."""
    if (
        isinstance(rnn, nn.LSTM)
        and x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not cpu_bf16_lstm()
    ):
        warnings.warn(BF16_FALLBACK, stacklevel=2)
        with torch.autocast("cpu", enabled=False):
            if state is not None:
                state = tuple(s.float() for s in state)
            return rnn(x.float(), state)
    return rnn(x, state)


def check_options(cell: str, nonlinearity: str, num_layers: int, dropouts: dict[str, float]):
    """Constructor validation shared by the recurrent models; names the bad option."""
    if cell not in CELLS:
        raise SeqlmError(f"model.cell={cell!r} is not one of {', '.join(CELLS)}")
    if nonlinearity not in NONLINEARITIES:
        raise SeqlmError(
            f"model.nonlinearity={nonlinearity!r} is not one of {', '.join(NONLINEARITIES)}"
        )
    if num_layers < 1:
        raise SeqlmError(f"model.num_layers={num_layers} must be >= 1")
    for name, p in dropouts.items():
        if not 0.0 <= p < 1.0:
            raise SeqlmError(f"model.{name}={p} must be in [0, 1)")


def make_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, nonlinearity: str, dropout: float
) -> nn.Module:
    kwargs = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    return CELLS[cell](
        input_size,
        hidden_size,
        num_layers,
        batch_first=True,
        dropout=dropout if num_layers > 1 else 0.0,
        **kwargs,
    )


class RecurrentLM(nn.Module):
    """Embedding -> ``num_layers`` recurrent layers -> linear decoder. The shipped defaults of
    every argument but ``vocab_size`` are in ``conf/model/rnn.yaml`` (one source).

    Args:
        vocab_size: number of tokens (set from the data, not from config).
        cell: ``rnn`` (Elman), ``lstm`` or ``gru``.
        emb_size: size of the word vectors.
        hidden_size: size of the state ``s_t`` of each layer.
        num_layers: stacked layers; more than one is a deep RNN.
        nonlinearity: ``f`` of the Elman cell: ``tanh`` or ``relu``.
        emb_dropout: dropout on the word vectors.
        layer_dropout: dropout between stacked layers.
        out_dropout: dropout on the top layer's states before the decoder.
        tie_weights: decoder shares the embedding matrix (Press & Wolf 2017; needs
            ``emb_size == hidden_size``).
    """

    layout = "stream"

    def __init__(
        self,
        vocab_size: int,
        *,
        cell: str,
        emb_size: int,
        hidden_size: int,
        num_layers: int,
        nonlinearity: str,
        emb_dropout: float,
        layer_dropout: float,
        out_dropout: float,
        tie_weights: bool,
    ):
        super().__init__()
        check_options(
            cell,
            nonlinearity,
            num_layers,
            {
                "emb_dropout": emb_dropout,
                "layer_dropout": layer_dropout,
                "out_dropout": out_dropout,
            },
        )
        if tie_weights and emb_size != hidden_size:
            raise SeqlmError(
                f"model.tie_weights=true needs model.emb_size ({emb_size}) == "
                f"model.hidden_size ({hidden_size})"
            )
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, hidden_size
        self.embedding = nn.Embedding(vocab_size, emb_size)
        self.rnn = make_rnn(cell, emb_size, hidden_size, num_layers, nonlinearity, layer_dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        self.emb_drop, self.out_drop = nn.Dropout(emb_dropout), nn.Dropout(out_dropout)
        # As pytorch/examples' word_language_model: small uniform embedding and decoder; the
        # recurrent weights keep torch's U(-1/sqrt(H), 1/sqrt(H)).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """tokens (B, T) -> logits (B, T, V) and the state after the last step.
        ``state`` is None (zeros) or what the previous call returned."""
        x = self.emb_drop(self.embedding(tokens))  # (B, T, E)
        s, state = run_rnn(self.rnn, x, state)  # (B, T, H); state (L, B, H), a pair for LSTM
        return self.decoder(self.out_drop(s)), state
