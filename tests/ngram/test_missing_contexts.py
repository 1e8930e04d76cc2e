"""ARPA files that leave out n-grams other n-grams lean on, as SRILM's pruning writes them:

- a missing **suffix** ("a b c" listed, "b c" not): KenLM reads these (the blanks of
  ``lm/search_trie.cc``); seqlm scores them as KenLM does, checked against KenLM's own figures.
- a missing **context** ("a b </s>" listed, "a b" not; Kaldi's ``missing_backoffs.arpa``):
  KenLM refuses these files ("A 3-gram has context ... must appear in the model"), Kaldi's
  arpa2fst reads them. seqlm inserts each missing context with backoff 0 and the probability
  backing off gives it, which changes no score: they are scored by the ARPA backoff rule itself,
  checked against a plain implementation of that rule over the file's entries.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ngram import read_arpa, write_arpa

LN10 = math.log(10)


def arpa_rule(text: str):
    """log10 p(w | h) straight from an ARPA file's entries: the longest listed n-gram ending
    in w, plus the backoff of every longer context not used (0 for a context not listed)."""
    prob, bow = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith(("\\", "ngram")):
            continue
        n = len(parts) - 1 if not _number(parts[-1]) or len(parts) == 2 else len(parts) - 2
        words = tuple(parts[1 : 1 + n])
        prob[words] = float(parts[0])
        if len(parts) == n + 2:
            bow[words] = float(parts[-1])

    def p(history: tuple, w: str) -> float:
        if history + (w,) in prob:
            return prob[history + (w,)]
        if not history:
            return prob.get(("<unk>",), -99.0)
        return bow.get(history, 0.0) + p(history[1:], w)

    return p


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sentence_scores(model, sentence: str) -> np.ndarray:
    ids = [model.stoi.get(w, model.unk_id) for w in sentence.split()] + [model.eos_id]
    return model.score_ids(np.array(ids)) / LN10


# -- missing suffixes: KenLM's figures ----------------------------------------------------------
SUFFIX = """\\data\\
ngram 1=6
ngram 2=3
ngram 3=2

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.3
-0.9\t</s>
-0.7\ta\t-0.25
-0.8\tb\t-0.2
-0.9\tc\t-0.15

\\2-grams:
-0.4\t<s> a\t-0.12
-0.5\ta b\t-0.1
-0.6\tc a\t-0.05

\\3-grams:
-0.2\t<s> a b
-0.3\ta b c

\\end\\
"""

# kenlm.Model(...).full_scores of each sentence, the model built by KenLM's build_binary trie
# (kpu/kenlm 4cb443e; the kenlm module's default probing model refuses this file without -p 3)
KENLM = {
    "a b c": [-0.4, -0.2, -0.3, -1.05],
    "a b c a b c": [-0.4, -0.2, -0.3, -0.6, -0.55, -0.3, -1.05],
    "c a b c": [-1.2, -0.6, -0.55, -0.3, -1.05],
    "b c a": [-1.1, -1.1, -0.6, -1.2],
    "x a b c c": [-1.3, -0.7, -0.5, -0.3, -1.05, -1.05],
    "c a b c b": [-1.2, -0.6, -0.55, -0.3, -0.95, -1.1],
}


def test_missing_suffixes_score_as_kenlm(tmp_path, capsys):
    path = tmp_path / "suffix.arpa"
    path.write_text(SUFFIX)
    model = read_arpa(path)
    assert capsys.readouterr().err == ""  # nothing to add: every context is listed
    rule = arpa_rule(SUFFIX)
    for sentence, expected in KENLM.items():
        assert sentence_scores(model, sentence) == pytest.approx(expected, abs=1e-6), sentence
        words = ["<s>", *[w if w in "abc" else "<unk>" for w in sentence.split()], "</s>"]
        by_rule = [rule(tuple(words[max(0, i - 2) : i]), words[i]) for i in range(1, len(words))]
        assert by_rule == pytest.approx(expected, abs=1e-9)  # the rule agrees with KenLM


# -- missing contexts: the ARPA rule ------------------------------------------------------------
# "a b" is missing for "a b c" and "a b </s>"; "<s> b" for "<s> b c"; "b a c" for "b a c d",
# and its own context "b a" too (a context of a context): four contexts to add.
CONTEXTS = """\\data\\
ngram 1=7
ngram 2=4
ngram 3=4
ngram 4=2

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.30
-0.9\t</s>
-0.7\ta\t-0.25
-0.8\tb\t-0.20
-0.9\tc\t-0.15
-1.1\td\t-0.1

\\2-grams:
-0.4\t<s> a\t-0.12
-0.5\ta c\t-0.1
-0.6\tc d\t-0.05
-0.3\td </s>

\\3-grams:
-0.2\ta b c\t-0.03
-0.25\ta b </s>
-0.35\t<s> b c
-0.15\t<s> a c

\\4-grams:
-0.05\ta b c d
-0.07\tb a c d

\\end\\
"""

SENTENCES = ["b a c d", "c b a c d", "a b c d", "a b", "b c d", "a c d", "a b c d a b c", "x a b"]


def test_missing_contexts_are_added_and_score_by_the_arpa_rule(tmp_path, capsys):
    path = tmp_path / "contexts.arpa"
    path.write_text(CONTEXTS)
    model = read_arpa(path)
    err = capsys.readouterr().err
    assert model.info["added_contexts"] == 4
    assert len(err.strip().splitlines()) == 1 and "4 n-grams" in err
    assert [len(k) for k in model.keys] == [7, 4 + 3, 4 + 1, 2]
    rule = arpa_rule(CONTEXTS)
    for sentence in SENTENCES:
        words = ["<s>", *[w if w in "abcd" else "<unk>" for w in sentence.split()], "</s>"]
        expected = [rule(tuple(words[max(0, i - 3) : i]), words[i]) for i in range(1, len(words))]
        assert sentence_scores(model, sentence) == pytest.approx(expected, abs=1e-9), sentence


def test_kaldis_missing_backoffs_file_reads(tmp_path, capsys):
    """kaldi-asr/kaldi src/lm/test_data/missing_backoffs.arpa, as it is (space before some
    backoffs, no <unk>, the 3-gram 'a b </s>' without 'a b')."""
    text = (
        "\n\\data\\\nngram 1=4\nngram 2=1\nngram 3=2\n\n\\1-grams:\n-5.234679\ta -3.3\n"
        "-3.456783\tb\n0.0000000\t<s> -2.5\n-4.333333\t</s>\n\n\\2-grams:\n-1.30490\t<s> a -4.2\n\n"
        "\\3-grams:\n-0.34958\t<s> a b\n-0.23940\ta b </s>\n\n\\end\\\n"
    )
    path = tmp_path / "missing_backoffs.arpa"
    path.write_text(text)
    model = read_arpa(path)
    assert model.info["added_contexts"] == 1 and "1 n-grams" in capsys.readouterr().err
    rule = arpa_rule(text)
    for sentence in ("a b", "b a b", "a b a b"):
        words = ["<s>", *sentence.split(), "</s>"]
        expected = [rule(tuple(words[max(0, i - 2) : i]), words[i]) for i in range(1, len(words))]
        assert sentence_scores(model, sentence) == pytest.approx(expected, abs=1e-6), sentence


def test_added_contexts_survive_a_round_trip(tmp_path, capsys):
    path = tmp_path / "contexts.arpa"
    path.write_text(CONTEXTS)
    model = read_arpa(path)
    write_arpa(model, tmp_path / "fixed.arpa")
    capsys.readouterr()
    again = read_arpa(tmp_path / "fixed.arpa")
    assert "added_contexts" not in again.info and capsys.readouterr().err == ""
    for sentence in SENTENCES:
        assert sentence_scores(again, sentence) == pytest.approx(
            sentence_scores(model, sentence), abs=1e-6
        )
