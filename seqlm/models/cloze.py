"""``ClozeLM``: the bidirectional RNN used for fill-in-the-blank.

The tutorial's bidirectional RNN, with the one change that makes it an honest model of words:
the forward state stops *before* the blank and the backward state starts *after* it, so the
prediction never sees the word it predicts:

    s_t  = f(U  x_t + W  s_{t-1})        forward, left to right
    s'_t = f(U' x_t + W' s'_{t+1})       backward, right to left, no weights shared
    o_t  = softmax(V s_{t-1} + V' s'_{t+1})

Its exp(mean NLL) is a *pseudo*-perplexity: each token is predicted from both sides, so the
product of these conditionals is not the probability of the text, and the figure is never
comparable with a left-to-right perplexity.
"""

from __future__ import annotations

import torch
from torch import nn

from seqlm.data.batching import IGNORE
from seqlm.models.output import AdaptiveSoftmax, LanguageModel
from seqlm.models.recurrent import make_rnn, run_rnn
from seqlm.options import CellOptions


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths[b]`` positions, leave its padding where it is.
    x (B, T, ...) ; applying it twice gives ``x`` back."""
    T = x.shape[1]
    t = torch.arange(T, device=x.device).expand(len(lengths), T)  # (B, T)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    if x.dim() > 2:
        idx = idx[..., None].expand(*idx.shape, *x.shape[2:])
    return x.gather(1, idx)


class ClozeLM(LanguageModel):
    """Forward and backward recurrent stacks over a shared word embedding. The shipped
    defaults of every argument but ``vocab_size`` are in ``conf/model/birnn.yaml``.

    Args:
        vocab_size: number of tokens (set from the data, not from config).
        cell: ``rnn`` (Elman), ``lstm``, ``gru``, ``mogrifier``, ``mingru`` or ``minlstm``,
            for both directions.
        emb_size: size of the word vectors.
        hidden_size: state size of each direction.
        num_layers: stacked layers in each direction.
        nonlinearity: ``f`` of the Elman cell: ``tanh`` or ``relu``.
        emb_dropout: dropout on the word vectors.
        layer_dropout: dropout between stacked layers.
        out_dropout: dropout on both directions' states before the decoders.
        softmax, cutoffs, div_value: the output layer, as ``RecurrentLM``'s; an adaptive
            softmax reads ``[s_{t-1}, s'_{t+1}]`` (its head is then ``V s_{t-1} + V' s'_{t+1}``
            with the two blocks of one matrix).
        mogrify_rounds, mogrify_rank: the Mogrifier LSTM's, as ``RecurrentLM``'s.
    """

    layout = "sentences"

    Options = CellOptions  # every option's type and rule (``seqlm.options``)

    def __init__(self, vocab_size: int, **options):
        """One keyword per key of ``conf/model/birnn.yaml``, checked by ``CellOptions``."""
        super().__init__()
        o = CellOptions.of(options)
        hidden_size, self.cell = o.hidden_size, o.cell
        self.embedding = nn.Embedding(vocab_size, o.emb_size)
        layers = (o.cell, o.emb_size, hidden_size, o.num_layers, o.layer_dropout, o.cell_kwargs)
        self.fwd, self.bwd = make_rnn(*layers), make_rnn(*layers)
        self.emb_drop, self.out_drop = nn.Dropout(o.emb_dropout), nn.Dropout(o.out_dropout)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if o.softmax == "adaptive":
            cutoffs = o.cutoffs_for(vocab_size)
            self.adaptive = AdaptiveSoftmax(2 * hidden_size, vocab_size, cutoffs, o.div_value)
            return
        self.adaptive = None
        self.dec_fwd = nn.Linear(hidden_size, vocab_size)  # V
        self.dec_bwd = nn.Linear(hidden_size, vocab_size, bias=False)  # V'
        for dec in (self.dec_fwd, self.dec_bwd):
            nn.init.uniform_(dec.weight, -0.1, 0.1)
        nn.init.zeros_(self.dec_fwd.bias)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T+2): boundary, the T positions to predict, boundary (then padding);
        lengths (B,): valid positions per row, both boundaries included.
        Returns (B, T, 2H): row t is ``[s_{t-1}, s'_{t+1}]``, both sides of ``tokens[:, t+1]``."""
        x = self.emb_drop(self.embedding(tokens))  # (B, T+2, E)
        s, _ = run_rnn(self.fwd, x, None)  # s[:, t] has read tokens[:, :t+1]
        sb, _ = run_rnn(self.bwd, reverse_within(x, lengths), None)
        sb = reverse_within(sb, lengths)  # sb[:, t] has read tokens[:, t:length]
        left = self.out_drop(s[:, :-2])  # s_{t-1} for targets t = 1..T
        right = self.out_drop(sb[:, 2:])  # s'_{t+1}
        return torch.cat([left, right], -1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.adaptive is not None:  # normalised log-probabilities: scores of one softmax
            return self.adaptive.log_probs(hidden)
        left, right = hidden.chunk(2, -1)
        return self.dec_fwd(left) + self.dec_bwd(right)  # V s_{t-1} + V' s'_{t+1}

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of ``features``' positions: row t predicts ``tokens[:, t+1]``."""
        return self.logits(self.features(tokens, lengths))

    @staticmethod
    def lengths_of(target: torch.Tensor) -> torch.Tensor:
        """Valid input length of each row of a sentence batch, from its (B, T) targets."""
        return (target != IGNORE).sum(1) + 2
