"""The ``.npz`` model file: every table exactly, no pickle; loaded as memory maps, so a model
larger than the memory budget can still score. Files of the first format (packed keys) are
converted on load, and every file's tables are checked before they are used.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

from ngram import keys as trie
from ngram.errors import NgramError
from ngram.files import written

FORMAT = 2  # .npz layout: 2 = trie keys (ngram.keys); 1 = packed keys, converted on load


def save(lm, path) -> None:
    """Every table of ``lm``, exactly, written whole or not at all."""
    arrays = {
        "itos": np.asarray(lm.itos),
        "meta": np.asarray([lm.order, lm.unk_id, lm.eos_id, int(lm.normalized), FORMAT]),
        "missing_bow": np.asarray(lm.missing_bow),
    }
    arrays["smoothing"] = np.asarray(lm.smoothing)
    for k in range(lm.order):
        arrays[f"keys{k}"], arrays[f"logp{k}"] = lm.keys[k], lm.logp[k]
        arrays[f"logbow{k}"] = lm.logbow[k]
        if lm._uniform is not None:
            arrays[f"uctx{k}"], arrays[f"ugamma{k}"] = lm._uniform[k]
    with written(path) as tmp:
        write_aligned(tmp, arrays)


ALIGN = 64  # bytes: every table's data starts at a multiple of it in the file


def write_aligned(path, arrays: dict) -> None:
    """An ``.npz`` (uncompressed zip of ``.npy`` members, as ``np.savez``) whose members' data
    start at multiples of ``ALIGN`` bytes, padded with a zip extra field (as Android's
    zipalign), so that a memory map of a table is aligned: numpy's ``searchsorted`` copies a
    misaligned array whole on every call."""
    import io

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=False)
            data = buf.getvalue()
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            header = 30 + len(info.filename.encode()) + 4  # local header, name, extra's head
            start = zf.fp.tell() + header + len(data) - np.asanyarray(a).nbytes
            pad = -start % ALIGN
            info.extra = struct.pack("<HH", 0xD935, pad) + bytes(pad)
            zf.writestr(info, data)


def load(cls, path, mmap: bool = True):
    """A model of class ``cls`` (``NgramLM``) saved by ``save``; with ``mmap`` its tables are
    memory maps into the file."""
    try:
        z = _npz_arrays(path, mmap)
        meta = [int(x) for x in z["meta"]]
        order, unk_id, eos_id, normalized = meta[:4]
        itos = z["itos"]
        if not 1 <= order <= len(z) or not (0 <= unk_id < len(itos) and 0 <= eos_id < len(itos)):
            raise ValueError(f"order {order}, <unk> {unk_id}, <eos> {eos_id}: out of range")
        m = cls(
            [str(w) for w in itos],
            order,
            str(z["smoothing"]),
            unk_id,
            eos_id,
            bool(normalized),
        )
        m.keys = [z[f"keys{k}"] for k in range(order)]
        m.logp = [z[f"logp{k}"] for k in range(order)]
        m.logbow = [z[f"logbow{k}"] for k in range(order)]
        if "uctx0" in z:
            m._uniform = [(z[f"uctx{k}"], z[f"ugamma{k}"]) for k in range(order)]
        if "missing_bow" in z:
            m.missing_bow = float(z["missing_bow"])
        elif m.smoothing == "stupid_backoff":
            m.missing_bow = float(np.log(0.4))  # the first format saved only the default
        if len(meta) < 5:
            _from_packed_keys(m)
        _check_tables(m, path)
    except NgramError:
        raise
    except Exception as e:  # noqa: BLE001 - any way a damaged file fails: one line
        why = " ".join(f"{type(e).__name__}: {e}".split())
        raise NgramError(f"{path}: not an ngram model file ({why})") from None
    return m


def _from_packed_keys(self) -> None:  # self: the model being loaded
    """Tables of the first ``.npz`` format, whose keys packed the words as ``sum w_i
    B^(k-i)``: the same n-grams in the same (word-by-word) order, keyed as ``ngram.keys``.
    Its additive and MLE models had no ``<s>`` unigram; it gets its row (log p 0)."""
    B, V = self.base, self.vocab_size
    keys = [np.asarray(t, dtype=np.int64) for t in self.keys]
    self.logp = [np.asarray(t) for t in self.logp]
    self.logbow = [np.asarray(t) for t in self.logbow]
    if len(keys[0]) == V:  # no <s> row
        keys[0] = np.arange(V + 1, dtype=np.int64)
        self.logp[0] = np.append(self.logp[0], 0.0)
        self.logbow[0] = np.append(self.logbow[0], 0.0)

    def digits(packed, k):
        return np.stack([(packed // B ** (k - 1 - j)) % B for j in range(k)], 1)

    new = [keys[0]]
    for k in range(2, self.order + 1):
        new.append(trie.from_words(digits(keys[k - 1], k), new, B)[0])
    self.keys = new
    if self._uniform is not None:
        uniform = [self._uniform[0]]
        for k in range(2, self.order + 1):
            ctx_keys, gamma = self._uniform[k - 1]
            cols = digits(np.asarray(ctx_keys, dtype=np.int64), k - 1)
            key = trie.from_words(cols, new, B)[0]
            uniform.append((np.searchsorted(new[k - 2], key), np.asarray(gamma)))
        self._uniform = uniform


def _check_tables(self, path) -> None:  # self: the model being loaded
    """Values, not only the format: keys strictly increasing (lookups bisect them), every
    id a unigram, every context an index of the order below, and no NaN or +inf among the
    log-probabilities and weights (-inf is log 0). Read in blocks (from the file, for a
    memory map), so the check holds no copy of a large model."""
    zero_weights: set[int] = set()  # orders with a backoff weight of log 0
    for k in range(self.order):
        keys = self.keys[k]
        bad = keys.dtype != np.int64 or not _increasing(keys)
        bad = bad or not len(keys) == len(self.logp[k]) == len(self.logbow[k])
        if k == 0:
            bad = bad or len(keys) != self.base or keys[0] != 0 or keys[-1] != self.base - 1
        elif len(keys):
            bad = bad or keys[0] < 0 or keys[-1] // self.base >= len(self.keys[k - 1])
        if bad:
            raise NgramError(f"{path}: the {k + 1}-gram keys are not a sorted n-gram table")
        tables = [self.logp[k], self.logbow[k]]
        if self._uniform is not None:
            tables.append(self._uniform[k][1])
        for table in tables:
            for b in _blocks(table):
                if np.isnan(b).any() or np.isposinf(b).any():
                    raise NgramError(
                        f"{path}: a {k + 1}-gram log-probability or weight is NaN or +inf"
                    )
                if table is self.logbow[k] and np.isneginf(b).any():
                    zero_weights.add(k)  # checked below, in the same pass's findings
    if self._uniform is None and self.normalized:
        _check_no_zero_probability(self, path, zero_weights)


def _check_no_zero_probability(self, path, zero_weights: set[int]) -> None:
    """Refuse a normalised backoff model that gives a word of its vocabulary probability 0: a
    unigram of log 0, or a context of an order in ``zero_weights`` whose log backoff weight is
    -inf while some word is not stored after it (every such word would back off to 0; entropy
    pruning could once write one). The top order's weights are never used."""
    V, B = self.vocab_size, self.base
    if np.isneginf(np.asarray(self.logp[0][:V])).any():  # ids 0..V-1; <s> is id V
        raise NgramError(f"{path}: a word of the vocabulary has unigram probability 0")
    for k in sorted(zero_weights - {self.order - 1}):
        dead = np.concatenate(
            [np.flatnonzero(np.isneginf(b)) + i for i, b in _indexed_blocks(self.logbow[k])]
        )
        children = np.zeros(len(self.keys[k]), dtype=np.int64)
        for block in _blocks(self.keys[k + 1]):
            children += np.bincount(block // B, minlength=len(children))
        if (children[dead] < V).any():
            raise NgramError(
                f"{path}: a {k + 1}-word context has backoff weight 0 while words are missing "
                "after it: they would get probability 0"
            )


def _indexed_blocks(a: np.ndarray, size: int = 1 << 22):
    """(offset, block) of ``_blocks``."""
    yield from zip(range(0, len(a), size), _blocks(a, size))


def _blocks(a: np.ndarray, size: int = 1 << 22):
    """An array's values in blocks. A memory map is read from its file instead, so that a
    pass over a large model maps none of its pages into the process (they would count as
    resident memory until unmapped)."""
    if not isinstance(a, np.memmap):
        yield from (a[i : i + size] for i in range(0, len(a), size))
        return
    with open(a.filename, "rb") as f:
        for i in range(0, len(a), size):
            f.seek(a.offset + i * a.itemsize)
            yield np.fromfile(f, dtype=a.dtype, count=min(size, len(a) - i))


def _increasing(keys: np.ndarray) -> bool:
    last = None
    for b in _blocks(keys):
        if np.any(b[1:] <= b[:-1]) or (last is not None and len(b) and b[0] <= last):
            return False
        last = b[-1] if len(b) else last
    return True


def _npz_arrays(path, mmap: bool) -> dict:
    """name -> array of an ``.npz`` file; with ``mmap``, every uncompressed numeric member is a
    read-only memory map into the zip file (``np.savez`` stores members uncompressed)."""
    z = np.load(path, allow_pickle=False)
    if not mmap:
        return z
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            f.seek(info.header_offset)
            local = f.read(30)  # the zip local file header: name and extra field lengths
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            if (
                info.compress_type != zipfile.ZIP_STORED
                or dtype.kind not in "iuf"
                or not all(shape)
            ):
                out[name] = z[name]  # strings (the vocabulary), scalars, empty tables
                continue
            offset = f.tell()
            if offset % dtype.alignment:  # a file written before tables were aligned: in memory
                out[name] = z[name]
                continue
            out[name] = np.memmap(
                path,
                dtype=dtype,
                mode="r",
                offset=offset,
                shape=shape,
                order="F" if fortran else "C",
            )
    return out
