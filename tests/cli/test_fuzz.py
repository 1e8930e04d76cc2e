"""Every reader of a user's file, fed random bytes, truncations, huge or negative numbers,
Unicode oddities and deep nesting: the result is a correct read or one ``SeqlmError`` /
``NgramError`` line, never another exception, a hang or a huge allocation."""

from __future__ import annotations

import gzip
import io
import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ngram import NgramError, NgramLM, read_arpa
from seqlm.data.corpora import iter_lines, read_text
from seqlm.data.vocab import Vocab
from seqlm.decoding.rescoring import read_nbest, read_refs
from seqlm.errors import SeqlmError
from seqlm.scorers.network import load_network

ARPA = (Path(__file__).resolve().parents[1] / "ngram" / "kenlm_test.arpa").read_text()
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ODD_NUMBERS = ["nan", "inf", "-inf", "1e400", "-1e400", "9" * 30, "-0", "", "x", "0x10", "1_0"]
ODD_TEXT = st.text(
    alphabet=st.sampled_from([*string.printable, "\u2028", "\ufeff", "\x00", "é", "宝", "\u200b"]),
    max_size=60,
)


@st.composite
def mutated_arpa(draw) -> bytes:
    lines = ARPA.splitlines()
    kind = draw(st.sampled_from(["truncate", "line", "number", "count", "bytes", "drop"]))
    if kind == "truncate":
        raw = ARPA.encode()
        return raw[: draw(st.integers(0, len(raw)))]
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "line":
        lines[i] = draw(ODD_TEXT)
    elif kind == "drop":
        del lines[i]
    elif kind == "number":
        fields = lines[i].split("\t")
        j = draw(st.integers(0, len(fields) - 1))
        fields[j] = draw(st.sampled_from(ODD_NUMBERS))
        lines[i] = "\t".join(fields)
    else:  # a header that claims any count, up to 10^13 n-grams
        n = draw(st.integers(-5, 10**13))
        k = draw(st.integers(1, 3))
        lines = [f"ngram {k}={n}" if ln.startswith(f"ngram {k}=") else ln for ln in lines]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


@FUZZ
@given(raw=mutated_arpa(), gz=st.booleans())
def test_arpa_reader(tmp_path, raw, gz):
    path = tmp_path / ("lm.arpa.gz" if gz else "lm.arpa")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    try:
        model = read_arpa(path)
    except NgramError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert model.order >= 1 and all(np.isfinite(lp).all() for lp in model.logp)


def test_an_arpa_header_claiming_a_trillion_ngrams_allocates_nothing(tmp_path):
    path = tmp_path / "huge.arpa"
    path.write_text(ARPA.replace("ngram 1=", "ngram 1=1000000000000\n#", 1))
    with pytest.raises(NgramError, match="claims 1000000000000 1-grams"):
        read_arpa(path)


@pytest.fixture(scope="module")
def npz_bytes(tmp_path_factory) -> bytes:
    sentences = [["a", "b", "c"], ["a", "c"], ["b", "b"], ["c", "a", "b"]] * 3
    model = NgramLM.fit(sentences, order=3, smoothing="kn", discount=0.5)
    path = tmp_path_factory.mktemp("npz") / "m.npz"
    model.save(path)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_npz_model_reader(tmp_path, npz_bytes, data):
    kind = data.draw(st.sampled_from(["truncate", "flip", "bytes", "arrays"]))
    if kind == "truncate":
        raw = npz_bytes[: data.draw(st.integers(0, len(npz_bytes)))]
    elif kind == "flip":
        raw = bytearray(npz_bytes)
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        raw = bytes(raw)
    elif kind == "bytes":
        raw = data.draw(st.binary(max_size=300))
    else:  # well-formed .npz, arrays of the wrong size, type or value
        with np.load(io.BytesIO(npz_bytes)) as z:
            arrays = {k: z[k] for k in z.files}
        key = data.draw(st.sampled_from(sorted(arrays)))
        arrays[key] = data.draw(
            st.sampled_from(
                [np.zeros(0), np.asarray([10**12]), np.asarray([-1, -1, -1, -1, -1]),
                 np.asarray(["x"]), np.full(3, np.nan), np.asarray([[1, 2], [3, 4]])]
            )
        )  # fmt: skip
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        raw = buf.getvalue()
    path = tmp_path / "model.npz"
    path.write_bytes(raw)
    try:
        model = NgramLM.load(path)
    except NgramError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert np.isfinite(model.perplexity(np.asarray([0, 1, 2, 1], dtype=np.int32)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@FUZZ
@given(raw=st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(ODD_TEXT, max_size=6).map(lambda w: json.dumps(["<unk>", "<eos>", *w]).encode()),
    st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
))  # fmt: skip
def test_vocabulary_reader(tmp_path, raw):
    path = tmp_path / "vocab.json"
    path.write_bytes(raw)
    try:
        vocab = Vocab.load(path)
    except SeqlmError as e:
        assert str(e).startswith(f"{path}: not a seqlm vocabulary") and "\n" not in str(e)
        return
    assert vocab.itos[:2] == ["<unk>", "<eos>"] and len(set(vocab.itos)) == len(vocab)


tsv_lines = st.lists(
    st.lists(st.one_of(ODD_TEXT, st.sampled_from(ODD_NUMBERS)), min_size=0, max_size=4).map(
        "\t".join
    ),
    max_size=6,
)


@FUZZ
@given(lines=tsv_lines, raw=st.binary(max_size=100), use_raw=st.booleans())
def test_nbest_and_reference_readers(tmp_path, lines, raw, use_raw):
    path = tmp_path / "in.tsv"
    if use_raw:
        path.write_bytes(raw)
    else:
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    for reader in (read_nbest, read_refs):
        try:
            reader(path)
        except SeqlmError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), ODD_TEXT.map(str.encode)), gz=st.booleans())
def test_text_corpus_readers(tmp_path, raw, gz):
    path = tmp_path / ("corpus.txt.gz" if gz else "corpus.txt")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    try:
        assert isinstance(read_text(path), str)
    except SeqlmError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
    try:
        assert all(isinstance(line, str) for line in iter_lines(path))
    except SeqlmError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)


checkpoint_parts = st.fixed_dictionaries(
    {},
    optional={
        "hyper_parameters": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "model": st.one_of(
                        json_values,
                        st.just({"_target_": "seqlm.models.RecurrentLM"}),
                        st.just({"_target_": "os.system", "command": "true"}),
                    ),
                    "optim": json_values,
                },
            ),
        ),  # fmt: skip
        "seqlm": st.one_of(
            json_values,
            st.fixed_dictionaries({"vocab": json_values, "config": json_values}),
        ),
        "state_dict": st.one_of(json_values, st.just({"net.decoder.weight": torch.zeros(2, 2)})),
    },
)


@FUZZ
@given(parts=checkpoint_parts, raw=st.binary(max_size=200), use_raw=st.booleans())
def test_checkpoint_reader(tmp_path, parts, raw, use_raw):
    path = tmp_path / "model.ckpt"
    if use_raw:
        path.write_bytes(raw)
    else:
        torch.save(parts, path)
    with pytest.raises(SeqlmError) as e:
        load_network(path)
    assert str(e.value).startswith(f"ckpt='{path}': not a seqlm checkpoint")
