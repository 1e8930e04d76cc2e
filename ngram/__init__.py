"""Smoothed n-gram language models, numpy only (never imports torch or seqlm).

    from ngram import NgramLM, read_arpa, write_arpa
    lm = NgramLM.fit(sentences, order=5, smoothing="modified_kn", prune=[0, 1, 1, 1, 1])
    lm.logprob("cat", ["<s>", "the"]); lm.perplexity(ids); write_arpa(lm, "lm.arpa")
    state = lm.begin(64); lp, state = lm.extend(state, words)   # what a decoder steps

Any order, up to 2^31 words (docs/ngram.md).

Smoothing: mle, laplace, lidstone (k), witten_bell, absolute (discount), kn (discount),
modified_kn (discount_fallback), stupid_backoff (backoff; a score, not a probability).
"""

from ngram.arpa import read_arpa, write_arpa
from ngram.errors import NgramError
from ngram.model import NgramLM
from ngram.query import State
from ngram.smoothing import METHODS

__all__ = ["METHODS", "NgramError", "NgramLM", "State", "read_arpa", "write_arpa"]
