"""Counting in bounded memory: any budget gives the in-memory model bit for bit; memory-mapped
models and block-wise scoring change no score; bad budgets get one line."""

from __future__ import annotations

import gzip
from collections import Counter

import numpy as np
import pytest
from conftest import seqlm, shared

import ngram.counting as counting
import ngram.estimate
import ngram.keys as trie
import ngram.query
from ngram.errors import NgramError
from ngram.model import NgramLM


def _spy_spills(monkeypatch) -> list[str]:
    spills: list[str] = []
    real = counting.RunCounter._spill

    def spill(self):
        spills.append(self.name)
        real(self)

    monkeypatch.setattr(counting.RunCounter, "_spill", spill)
    return spills


def _brute_counts(ids: list[int], order: int, eos: int, bos: int) -> list[Counter]:
    """Every k-gram of every padded line ``<s> w .. </s>``, none predicting <s>, the unigram
    <s> once a line: counted one by one with a Counter."""
    out = [Counter() for _ in range(order)]
    line: list[int] = []
    for i in ids:
        line.append(i)
        if i != eos:
            continue
        padded = [bos, *line]
        out[0][(bos,)] += 1
        for end in range(1, len(padded)):
            for k in range(1, order + 1):
                if end - k + 1 >= 0:
                    out[k - 1][tuple(padded[end - k + 1 : end + 1])] += 1
        line = []
    return out


def _as_counter(tables, counts, k, base) -> Counter:
    words = trie.words_of(tables, k, base).tolist()
    return Counter({tuple(w): int(c) for w, c in zip(words, counts)})


@pytest.mark.parametrize("order", [1, 2, 4])
def test_bounded_counts_equal_a_brute_force_count_with_many_spills(monkeypatch, order):
    rng = np.random.default_rng(order)
    V, eos = 3000, 1
    # short lines, empty lines, and one line far longer than a chunk (its context is carried
    # from chunk to chunk)
    lengths = [*rng.integers(0, 30, 1500), 60_000, *rng.integers(0, 5, 300)]
    ids = []
    for n in lengths:
        ids += [*rng.integers(2, V, n).tolist(), eos]
    spills = _spy_spills(monkeypatch)
    budget = counting.MIN_BUDGET  # chunks of 4,096 positions; a spill every few chunks
    raw = counting.count_ngrams(np.asarray(ids, np.int32), order, V + 1, eos, V, budget)
    assert all(spills.count(f"order{k}") >= 2 for k in range(2, order + 1))  # 1: a bincount
    brute = _brute_counts(ids, order, eos, V)
    tables = [np.arange(V + 1)] + [keys for keys, _ in raw[1:]]  # unigrams: index = id
    for k in range(1, order + 1):
        keys, counts = raw[k - 1]
        assert np.all(keys[1:] > keys[:-1])
        if k == 1:
            assert dict(zip(keys.tolist(), counts.tolist())) == {
                w[0]: c for w, c in brute[0].items()
            }
        else:
            assert _as_counter(tables, counts, k, V + 1) == brute[k - 1]


def _ptb_train_ids() -> tuple[np.ndarray, list[str]]:
    with gzip.open(shared("ptb") / "ptb.train.txt.gz", "rt") as f:
        lines = [ln.split() for ln in f]
    itos = ["<unk>", "</s>", *sorted({w for ln in lines for w in ln} - {"<unk>"})]
    stoi = {w: i for i, w in enumerate(itos)}
    ids = np.asarray([i for ln in lines for i in [*(stoi[w] for w in ln), 1]], np.int32)
    return ids, itos


def test_bounded_fit_is_the_in_memory_fit_bit_for_bit_on_ptb(monkeypatch):
    ids, itos = _ptb_train_ids()
    whole = NgramLM.fit_ids(ids, itos, 3, "modified_kn")  # default budget: no spill on PTB
    spills = _spy_spills(monkeypatch)
    small = NgramLM.fit_ids(ids, itos, 3, "modified_kn", max_memory="8M")
    assert len(spills) >= 6  # several spills of every order
    assert small.info == whole.info
    for k in range(3):
        np.testing.assert_array_equal(small.keys[k], whole.keys[k])
        np.testing.assert_array_equal(small.logp[k], whole.logp[k])  # exact, not approx
        np.testing.assert_array_equal(small.logbow[k], whole.logbow[k])


@pytest.mark.parametrize(
    "smoothing, params",
    [
        ("witten_bell", {}),
        ("kn", {"discount": 0.7}),
        ("stupid_backoff", {}),
        ("lidstone", {"k": 0.1}),
    ],
)
def test_every_smoothing_is_independent_of_the_budget(monkeypatch, smoothing, params):
    rng = np.random.default_rng(0)
    ids = np.where(rng.random(60_000) < 0.12, 1, rng.integers(2, 40, 60_000)).astype(np.int32)
    itos = ["<unk>", "</s>", *map(str, range(2, 40))]
    whole = NgramLM.fit_ids(ids, itos, 4, smoothing, **params)
    monkeypatch.setattr(ngram.estimate, "ESTIMATE_BYTES_PER_NGRAM", 1 << 16)  # blocks of ~1k
    small = NgramLM.fit_ids(ids, itos, 4, smoothing, max_memory=counting.MIN_BUDGET, **params)
    for k in range(4):
        np.testing.assert_array_equal(small.keys[k], whole.keys[k])
        np.testing.assert_array_equal(small.logp[k], whole.logp[k])
        np.testing.assert_array_equal(small.logbow[k], whole.logbow[k])


def test_context_blocks_never_split_a_context():
    base = 10
    keys = np.array([11, 12, 13, 21, 31, 32, 33, 34, 35, 41])
    blocks = list(counting.context_blocks(keys, base, 2))
    assert blocks[0][0] == 0 and blocks[-1][1] == len(keys)
    assert all(b0[1] == b1[0] for b0, b1 in zip(blocks, blocks[1:]))
    for _, b in blocks:
        assert b == len(keys) or keys[b] // base != keys[b - 1] // base
    assert (4, 9) in blocks  # context 3 is larger than a block: kept whole


def test_saved_models_are_memory_mapped_and_score_the_same(tmp_path, monkeypatch):
    ids, itos = _ptb_train_ids()
    m = NgramLM.fit_ids(ids[:200_000], itos, 3, "modified_kn")
    m.save(tmp_path / "m.npz")
    mapped = NgramLM.load(tmp_path / "m.npz")
    assert all(isinstance(a, np.memmap) for a in (*mapped.keys, *mapped.logp))
    test = ids[200_000:260_000]
    expected = m.score_ids(test)
    np.testing.assert_array_equal(mapped.score_ids(test), expected)
    np.testing.assert_array_equal(
        NgramLM.load(tmp_path / "m.npz", mmap=False).score_ids(test), expected
    )
    monkeypatch.setattr(ngram.query, "SCORE_BLOCK", 1000)  # whole lines a block: same scores
    np.testing.assert_array_equal(mapped.score_ids(test), expected)


@pytest.mark.parametrize(
    "value, message",
    [
        (-1, "max_memory=-1 is not a size"),
        ("abc", "max_memory='abc' is not a size"),
        ("1K", "max_memory='1K' is too small: one counting chunk needs"),
        (True, "is not a size"),
    ],
)
def test_bad_budgets_get_one_line(value, message):
    with pytest.raises(NgramError, match=message) as e:
        NgramLM.fit_ids(np.array([2, 3, 1]), ["<unk>", "</s>", "a", "b"], 2, max_memory=value)
    assert "\n" not in str(e.value)


def test_sizes_read_as_people_write_them():
    assert counting.parse_size("2G") == 2 << 30
    assert counting.parse_size("500M") == 500 << 20
    assert counting.parse_size("1.5GiB") == 3 << 29
    assert counting.parse_size(5 << 20) == 5 << 20
    assert counting.MIN_BUDGET <= counting.default_budget() <= 2 << 30


def test_cli_budget_and_arpa_options(tmp_path):
    data = ["data=ptb", f"data.root={shared('ptb')}", "data.use_cache=false", "logger=none"]
    r = seqlm(
        "train",
        "model=kn2",
        *data,
        "model.max_memory=abc",
        f"hydra.run.dir={tmp_path}/a",
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("seqlm: error: model: max_memory='abc'")
    r = seqlm(
        "train",
        "model=kn2",
        *data,
        "model.max_memory=16M",
        "model.write_arpa=false",
        f"hydra.run.dir={tmp_path}/b",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "model.npz").exists() and not (tmp_path / "b" / "model.arpa").exists()
