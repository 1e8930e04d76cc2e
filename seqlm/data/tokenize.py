"""Tokenizers: one line of text in, a list of tokens out (``<eos>`` is added by the caller)."""

from __future__ import annotations

from collections.abc import Callable

from seqlm.errors import SeqlmError


def whitespace(line: str) -> list[str]:
    """Pre-tokenized corpora (PTB, WikiText): split on runs of white space."""
    return line.split()


def _nltk_tokenizer() -> Callable[[str], list[str]]:
    # Treebank's rule-based tokenizer needs no downloaded model (unlike word_tokenize's punkt).
    from nltk.tokenize import TreebankWordTokenizer

    return TreebankWordTokenizer().tokenize


def char(line: str) -> list[str]:
    """Characters, for any script; runs of white space become one ``▁`` token."""
    return list("▁".join(line.split()))


TOKENIZERS = ("whitespace", "nltk", "char")


def tokenizer_of(config: dict) -> Callable[[str], list[str]]:
    """The tokenizer a run was trained with, from its resolved config."""
    return get_tokenizer(config.get("data", {}).get("tokenizer", "whitespace"))


def get_tokenizer(name: str) -> Callable[[str], list[str]]:
    if name == "whitespace":
        return whitespace
    if name == "nltk":
        return _nltk_tokenizer()
    if name == "char":
        return char
    raise SeqlmError(f"data.tokenizer={name!r} is not one of {', '.join(TOKENIZERS)}")
