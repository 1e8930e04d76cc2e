"""ARPA text made and read by numpy as bytes (ngram.arpa_text): the numbers exactly as Python's
``%.7g`` writes them and ``float()`` reads them, the words found by hash, and files read the
same by the fast and the careful reader."""

from __future__ import annotations

import numpy as np
import pytest

import ngram.arpa as arpa
from ngram import NgramLM, read_arpa, write_arpa
from ngram.arpa_text import WordIndex, g7, parse_block, parse_numbers, word_hashes

EDGES = [
    0.0,
    -0.0,
    -99.0,
    -np.inf,
    -1e-5,
    -0.0001,
    -0.00010000001,
    -9.9999999,
    99.99999999,
    -99.4,
    -100.0,
    1.0,
    -0.5,
    -10.0,
    5e-300,
    -1e-100,
    -1e7,
    -9999999.5,
    0.000099999999,
]


def test_numbers_are_written_as_python_writes_them():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            -rng.exponential(1.5, 50_000),
            -(10 ** rng.uniform(-12, 2, 50_000)),
            10 ** rng.uniform(-12, 8, 20_000),
            rng.uniform(-1, 1, 20_000),
            EDGES,
        ]
    )
    ours = [bytes(row[row != 0]).decode() for row in g7(values)]
    expected = ["-99" if v < -99 else "0" if v == 0 else f"{v:.7g}" for v in values]
    assert ours == expected


def test_numbers_are_read_as_float_reads_them():
    rng = np.random.default_rng(1)
    values = np.concatenate([-rng.exponential(2, 20_000), -(10 ** rng.uniform(-9, 2, 20_000))])
    texts = [f"{v:.7g}" for v in values] + [repr(v) for v in values[:5000]]
    texts += [f"{v:.9g}" for v in values[:5000]] + ["-99", "0", "-0", "1e-05", "-2.5E+01", "7."]
    data = np.frombuffer("\t".join(texts).encode(), dtype=np.uint8)
    ends = np.cumsum([len(t) + 1 for t in texts]) - 1
    got = parse_numbers(data, ends - [len(t) for t in texts], ends)
    assert got.tobytes() == np.array([float(t) for t in texts]).tobytes()  # bit for bit
    bad = np.frombuffer(b"-1.5\tabc", dtype=np.uint8)
    assert parse_numbers(bad, np.array([0, 5]), np.array([4, 8])) is None


def test_words_are_found_by_hash():
    rng = np.random.default_rng(2)
    words = sorted(
        {"".join(rng.choice(list("abcdefgh蛋"), rng.integers(1, 9))) for _ in range(60_000)}
    )
    index = WordIndex(words)
    assert index.ok
    text = " ".join(words[::-1]).encode()
    data = np.frombuffer(text, dtype=np.uint8)
    lengths = np.array([len(w.encode()) for w in words[::-1]])
    ends = np.cumsum(lengths + 1) - 1
    ids = index.ids(word_hashes(data, ends - lengths, ends))
    assert np.array_equal(ids, np.arange(len(words))[::-1])
    unknown = np.frombuffer(b"zzz", dtype=np.uint8)
    assert index.ids(word_hashes(unknown, np.array([0]), np.array([3]))) is None


def test_a_block_not_laid_out_as_kenlm_writes_it_goes_to_the_careful_reader():
    index = WordIndex(["<unk>", "</s>", "a", "b", "<s>"])
    assert parse_block("-1.5\ta b\t-0.3\n-2\tb a", 2, index) is not None
    for text in ("-1.5 a b -0.3", "-1.5\ta  b", "-1.5\ta b c", "-1.5\ta x", "x\ta b"):
        assert parse_block(text, 2, index) is None, text


def test_the_fast_and_the_careful_reader_read_the_same_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(300)]
    sentences = [list(rng.choice(words, rng.integers(1, 12))) for _ in range(3000)]
    model = NgramLM.fit(sentences, order=4, discount_fallback=(0.5, 1.0, 1.5))
    write_arpa(model, tmp_path / "m.arpa")
    parsed = []  # the blocks the fast reader read (else both reads would be the careful one)

    def counted(*args):
        got = parse_block(*args)
        parsed.append(got is not None)
        return got

    monkeypatch.setattr(arpa, "parse_block", counted)
    fast = read_arpa(tmp_path / "m.arpa")
    assert parsed and all(parsed)
    monkeypatch.setattr(arpa, "parse_block", lambda *args: None)
    careful = read_arpa(tmp_path / "m.arpa")
    for a, b in zip(
        [fast.keys, fast.logp, fast.logbow], [careful.keys, careful.logp, careful.logbow]
    ):
        assert len(a) == len(b) == 4
        for x, y in zip(a, b):
            assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("n", [0, 1, 7])
def test_short_blocks(n):
    values = np.linspace(-3, 0, n)
    assert [bytes(r[r != 0]).decode() for r in g7(values)] == [
        f"{v:.7g}".replace("-0", "0") if v == 0 else f"{v:.7g}" for v in values
    ]
