"""Counting on Dask (ngram.distributed): a local cluster of worker processes gives the model of
one process bit for bit, over PTB, with shards of unequal size, and with a worker killed in the
middle of counting (the scheduler reruns its tasks)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import optional, shared

from ngram import NgramLM
from ngram.cli import encode_training
from ngram.distributed import FAULT_ENV, count_on_dask


@pytest.fixture(scope="module")
def ptb():
    optional("distributed")
    return encode_training(str(shared("ptb") / "ptb.train.txt.gz"))


def _tables(model):
    return [model.keys, model.logp, model.logbow]


def _same(a, b):
    for ta, tb in zip(_tables(a), _tables(b)):
        assert len(ta) == len(tb)
        for x, y in zip(ta, tb):
            assert x.dtype == y.dtype and np.array_equal(x, y)  # same n-grams, same floats


def test_a_local_cluster_gives_the_single_machine_model_bit_for_bit(ptb, monkeypatch):
    ids, itos = ptb
    one = NgramLM.fit_ids(ids, itos, order=4)
    _same(NgramLM.fit_ids(ids, itos, order=4, dask="local:3"), one)


def test_shards_of_unequal_size_and_a_killed_worker_give_the_same_counts(ptb, tmp_path):
    ids, itos = ptb
    V = len(itos)
    args = (3, V + 1, 1, V)  # order, base, </s>, <s>
    from ngram.counting import count_ngrams

    expected = count_ngrams(ids, *args, budget=64 << 20)
    ends = np.flatnonzero(ids == 1) + 1
    cuts = [0, int(ends[10]), int(ends[4000]), int(ends[4001]), int(ends[30000])]  # 11 lines ..
    got = count_on_dask(ids, *args, "local:2", cuts=cuts)
    for (k1, c1), (k2, c2) in zip(got, expected, strict=True):
        assert np.array_equal(k1, k2) and np.array_equal(c1, c2)
    marker = tmp_path / "killed"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(FAULT_ENV, str(marker))  # the first counting task kills its worker process
        got = count_on_dask(ids, *args, "local:2", cuts=cuts)
    assert marker.exists()  # a worker did die in the middle of counting
    for (k1, c1), (k2, c2) in zip(got, expected, strict=True):
        assert np.array_equal(k1, k2) and np.array_equal(c1, c2)


def test_bad_addresses_are_one_line(ptb):
    from ngram.errors import NgramError

    ids, itos = ptb
    for address, message in (
        ("local:0", "give local:N with N >= 1"),
        ("somewhere", "give local:N or a scheduler address"),
        ("tcp://127.0.0.1:9", "cannot reach the scheduler"),
    ):
        with pytest.raises(NgramError, match=message):
            NgramLM.fit_ids(ids[:1000], itos, order=2, dask=address)
