"""Smoothed n-gram language models, numpy only (never imports torch or seqlm).

    from ngram import NgramLM, read_arpa, write_arpa
    lm = NgramLM.fit(sentences, order=3, smoothing="modified_kn")
    lm.logprob("cat", ["<s>", "the"]); lm.perplexity(ids); write_arpa(lm, "lm.arpa")

Smoothing: mle, laplace, lidstone (k), witten_bell, absolute (discount), kn (discount),
modified_kn (discount_fallback), stupid_backoff (backoff; a score, not a probability).
"""

from ngram.arpa import read_arpa, write_arpa
from ngram.errors import NgramError
from ngram.model import NgramLM
from ngram.smoothing import METHODS

__all__ = ["METHODS", "NgramError", "NgramLM", "read_arpa", "write_arpa"]
