"""The ``ngram`` command: each sub-command against the library (and the kenlm module where it
scores the same file), and every bad input one line on standard error with exit status 2."""

from __future__ import annotations

import gzip
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import optional, python_m

from ngram import NgramLM, read_arpa

TRAIN = ["the cat sat on the mat", "the dog sat", "a cat saw the dog", "the dog saw a cat"] * 3
TEST = ["the cat sat", "a dog saw the mat", "the zebra sat"]


def ngram(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return python_m("ngram", *args, cwd=cwd, stdin=stdin, timeout=120)


def fitted(corpus: Path, order: int) -> None:
    """lm.arpa of order ``order`` from train.txt (the corpus is too small for modified-KN's
    own discounts)."""
    args = ["fit", "-o", str(order), "--text", "train.txt", "--arpa", "lm.arpa"]
    assert ngram(*args, "--discount_fallback", cwd=corpus).returncode == 0


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n")
    with gzip.open(tmp_path / "train.txt.gz", "wt") as f:
        f.write("\n".join(TRAIN) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(TEST) + "\n")
    return tmp_path


def test_fit_writes_the_library_model_from_a_file_gzip_or_standard_input(corpus):
    r = ngram(
        "fit",
        "-o",
        "3",
        "--text",
        "train.txt",
        "--arpa",
        "lm.arpa",
        "--npz",
        "lm.npz",
        "--discount_fallback",
        cwd=corpus,
    )
    assert r.returncode == 0, r.stderr
    lib = NgramLM.fit([s.split() for s in TRAIN], order=3, discount_fallback=(0.5, 1.0, 1.5))
    saved = NgramLM.load(corpus / "lm.npz")
    assert len(saved.logp) == len(lib.logp) == 3
    for a, b in zip(saved.logp, lib.logp):
        assert np.array_equal(a, b)
    arpa = read_arpa(corpus / "lm.arpa")
    ids = np.array([arpa.stoi.get(w, 0) for w in ["the", "cat", "sat"]] + [arpa.eos_id])
    ids_lib = np.array([lib.stoi[w] for w in ["the", "cat", "sat"]] + [lib.eos_id])
    assert arpa.score_ids(ids) == pytest.approx(lib.score_ids(ids_lib), abs=1e-6)
    for source, stdin in (("train.txt.gz", None), ("-", "\n".join(TRAIN) + "\n")):
        r = ngram(
            "fit",
            "-o",
            "3",
            "--text",
            source,
            "--npz",
            "again.npz",
            "--discount_fallback",
            cwd=corpus,
            stdin=stdin,
        )
        assert r.returncode == 0, r.stderr
        again = NgramLM.load(corpus / "again.npz")
        assert len(again.logp) == 3
        assert all(np.array_equal(a, b) for a, b in zip(again.logp, saved.logp))


def test_score_and_ppl_print_what_query_prints(corpus):
    kenlm = optional("kenlm")
    fitted(corpus, 3)
    ref = kenlm.Model(str(corpus / "lm.arpa"))
    r = ngram("score", "lm.arpa", "--tokens", cwd=corpus, stdin="\n".join(TEST) + "\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for sentence, line in zip(TEST, lines):
        *tokens, total = line.split("\t")
        expected = list(ref.full_scores(sentence))
        assert len(tokens) == len(expected)
        for token, (lp, n, _oov) in zip(tokens, expected):
            word, length, score = token.rsplit(" ", 2)
            assert int(length) == n and float(score) == pytest.approx(lp, abs=1e-4)
            assert word.split("=")[0] in (*sentence.split(), "</s>")
        assert float(total.split()[1]) == pytest.approx(ref.score(sentence), abs=1e-4)
        assert int(total.split()[3]) == sum(oov for *_, oov in expected)
    summary = dict(line.split(":\t") for line in lines[len(TEST) :])
    n = sum(len(s.split()) + 1 for s in TEST)
    log10 = sum(ref.score(s) for s in TEST)
    assert float(summary["Perplexity including OOVs"]) == pytest.approx(
        10 ** (-log10 / n), rel=1e-5
    )
    assert int(summary["OOVs"]) == 1 and int(summary["Tokens"]) == n
    r = ngram("ppl", "lm.arpa", "test.txt", cwd=corpus)
    assert r.returncode == 0 and r.stdout.splitlines() == lines[len(TEST) :]
    perplexity = float(summary["Perplexity including OOVs"])
    assert math.isfinite(perplexity)


def test_convert_round_trips(corpus):
    fitted(corpus, 2)
    assert ngram("convert", "lm.arpa", "lm.npz", cwd=corpus).returncode == 0
    assert ngram("convert", "lm.npz", "back.arpa", cwd=corpus).returncode == 0
    a, b = read_arpa(corpus / "lm.arpa"), read_arpa(corpus / "back.arpa")
    for x, y in zip(a.logp, b.logp):
        assert np.allclose(x, y, atol=1e-6)


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["fit", "-o", "3", "--text", "train.txt"], None, "fit writes nothing: give --arpa"),
        (["fit", "-o", "0", "--text", "train.txt", "--arpa", "x.arpa"], None, "-o 0: the order"),
        (
            ["fit", "-o", "3", "--text", "nope.txt", "--arpa", "x.arpa"],
            None,
            "nope.txt: no such file",
        ),
        (
            ["fit", "-o", "3", "--text", "train.txt", "--arpa", "no/dir/x.arpa"],
            None,
            "no/dir/x.arpa: its folder does not exist",
        ),
        (["fit", "-o", "3", "--text", "train.txt", "--npz", "x.bin"], None, "must end in .npz"),
        (
            ["fit", "-o", "3", "--text", "train.txt", "--arpa", "x.arpa", "-S", "lots"],
            None,
            "-S='lots' is not a size",
        ),
        (
            ["fit", "-o", "3", "--text", "train.txt", "--arpa", "x.arpa", "-T", "nowhere"],
            None,
            "-T nowhere: no such folder",
        ),
        (
            ["fit", "-o", "3", "--text", "train.txt", "--arpa", "x.arpa", "--prune", "0", "x"],
            None,
            "'x' is not a count threshold",
        ),
        (["fit", "-o", "3", "--text", "-", "--arpa", "x.arpa"], "a <s> b\n", "line 1 holds <s>"),
        (["fit", "-o", "3", "--text", "-", "--arpa", "x.arpa"], "", "standard input: no text"),
        (
            ["fit", "-o", "3", "--text", "train.txt", "--arpa", "x.arpa", "--dask", "nowhere"],
            None,
            "--dask nowhere: give local:N or a scheduler address",
        ),
        (["score", "missing.arpa"], "a b\n", "missing.arpa: no such file"),
        (["score", "train.txt"], "a b\n", "train.txt"),
        (["ppl", "lm.npz", "test.txt"], None, "lm.npz: no such file"),
        (["convert", "train.txt", "train.txt"], None, "would overwrite the input"),
        (["bogus"], None, "invalid choice: 'bogus'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(corpus, args, stdin, message):
    r = ngram(*args, cwd=corpus, stdin=stdin)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ngram: error:"), r.stderr
    assert message in lines[0], lines[0]
    assert not (corpus / "x.arpa").exists()
