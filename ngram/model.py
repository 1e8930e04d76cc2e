"""``NgramLM``: an n-gram model of any order, fitted from text or read from ARPA.

A fitted model is kept in backoff form, as in an ARPA file: for every stored n-gram its full
(interpolated) log-probability, for every stored context its log backoff weight. A word is
then scored in one vectorised pass per order: the longest stored n-gram ending in it, plus the
backoff weights of the longer contexts that missed. Additive and MLE models, which spread
their left-over mass uniformly rather than over lower orders, are scored by their own rule.
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Iterable

import numpy as np

from ngram import counting
from ngram import smoothing as sm
from ngram.errors import NgramError

UNK, EOS, BOS = "<unk>", "</s>", "<s>"
ESTIMATE_BYTES_PER_NGRAM = 2048  # ~120 bytes of temporaries per n-gram of a smoothing block
SCORE_BLOCK = 1 << 20  # tokens scored at once: whole lines, so blocks do not change a score


LARGE = 1 << 22  # tokens or n-grams from which counting, reading and writing show a bar


def progress_bar(what: str, total: int, unit: str, work: int):
    """A progress bar (shown on a terminal) when ``work`` (tokens, n-grams) is large, else
    None."""
    if work < LARGE:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a nicety; numpy is the only requirement
        return None
    return tqdm(total=total, desc=what, unit=unit, leave=False, disable=None)


class NgramLM:
    """Ids ``0 .. V-1`` are the vocabulary (``unk_id``, ``eos_id`` among them); id ``V`` is
    ``<s>``. ``tables[k-1]`` holds order k: sorted keys, log-probs, log backoff weights."""

    def __init__(
        self,
        itos: list[str],
        order: int,
        smoothing: str,
        unk_id: int = 0,
        eos_id: int = 1,
        normalized: bool = True,
    ):
        self.itos, self.order, self.smoothing = list(itos), order, smoothing
        self.unk_id, self.eos_id, self.bos_id = unk_id, eos_id, len(itos)
        self.base = len(itos) + 1
        self.normalized = normalized
        self.keys: list[np.ndarray] = []
        self.logp: list[np.ndarray] = []
        self.logbow: list[np.ndarray] = []
        self.info: dict = {}
        self._uniform: list[tuple] | None = None  # (ctx keys, ctx total, gamma) for additive/MLE

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    # -- fitting -----------------------------------------------------------------------------
    @classmethod
    def fit_ids(
        cls,
        ids: np.ndarray,
        itos: list[str],
        order: int = 3,
        smoothing: str = "modified_kn",
        unk_id: int = 0,
        eos_id: int = 1,
        max_memory: int | str | None = None,
        **params,
    ) -> NgramLM:
        """Fit on an id stream whose lines end with ``eos_id`` (seqlm's layout).

        ``max_memory`` (bytes, or ``500M``, ``2G``; default ``counting.default_budget()``)
        bounds the counting: sorted runs spill to ``$TMPDIR`` and are merged, and each order is
        smoothed in blocks of whole contexts. Beside it the process holds the id stream and the
        model itself (24 bytes a stored n-gram). Any budget gives the same model, bit for bit."""
        if not isinstance(order, int) or order < 1:
            raise NgramError(f"order={order!r} must be an integer >= 1")
        if smoothing not in sm.METHODS:
            raise NgramError(f"smoothing={smoothing!r} is not one of {', '.join(sm.METHODS)}")
        params = check_params(smoothing, params)
        V = len(itos)
        counting.check_fits(V, order)
        model = cls(
            itos,
            order,
            smoothing,
            unk_id,
            eos_id,
            normalized=smoothing != "stupid_backoff",
        )
        budget = (
            counting.default_budget()
            if max_memory is None
            else counting.parse_size(max_memory, "max_memory")
        )
        ids = np.asarray(ids)
        if len(ids) == 0:
            raise NgramError("no tokens to count")
        if ids[-1] != eos_id:
            ids = np.append(ids, eos_id)  # a last line without its end marker

        def bar(chunks: int):
            return progress_bar(f"counting {order}-grams", chunks, "chunk", len(ids))

        raw = counting.count_ngrams(ids, order, model.base, eos_id, model.bos_id, budget, bar)
        model._estimate(raw, params, max(1024, budget // ESTIMATE_BYTES_PER_NGRAM))
        return model

    @classmethod
    def fit(
        cls,
        sentences: Iterable[list[str]],
        order: int = 3,
        smoothing: str = "modified_kn",
        **params,
    ) -> NgramLM:
        """Fit on tokenized sentences. The vocabulary is every word seen, plus ``<unk>`` (for
        words never seen) and ``</s>``; ``<s>`` is context only."""
        itos, stoi, ids = [UNK, EOS], {UNK: 0, EOS: 1}, []
        for sent in sentences:
            for w in sent:
                if w not in stoi:
                    stoi[w] = len(itos)
                    itos.append(w)
                ids.append(stoi[w])
            ids.append(1)
        if BOS in stoi:
            raise NgramError(f"the text holds the reserved token {BOS}")
        return cls.fit_ids(np.asarray(ids, dtype=np.int64), itos, order, smoothing, **params)

    def _estimate(self, raw: list[tuple[np.ndarray, np.ndarray]], params: dict, block: int) -> None:
        """Counts -> backoff-form tables, order by order; each order of two or more words in
        blocks of about ``block`` n-grams that never split a context (a context's mass is summed
        in one ``bincount``, so the result does not depend on the block size)."""
        N, V, base, method = self.order, self.vocab_size, self.base, self.smoothing
        # Unigram table: every vocabulary word (seen or not) and <s>, so every id has a row.
        all_ids = np.arange(V + 1, dtype=np.int64)
        uni = np.zeros(V + 1, dtype=np.int64)
        uni[raw[0][0]] = raw[0][1]
        keys_of, counts = [all_ids], [uni]
        for k in range(1, N):  # one order at a time, so only one order is held twice
            keys, c = raw[k]
            raw[k] = None  # the caller's list too: its int64 counts go now
            keys_of.append(keys)
            counts.append(_narrow(c))
            del keys, c
        if method in sm.CONTINUATION:
            # Lower orders count distinct left extensions, except n-grams that start with <s>
            # (nothing can precede them): KenLM's adjusted counts, Chen & Goodman sec. 3.
            for k in range(N - 1, 0, -1):
                keys = keys_of[k - 1]
                cont = counting.continuation_counts(keys_of[k], keys, k, base, block)
                starts_bos = keys // base ** (k - 1) == self.bos_id
                counts[k - 1] = _narrow(np.where(starts_bos, counts[k - 1], cont))
        if method in sm.UNIFORM:
            return self._estimate_uniform(keys_of, counts, params)

        prev_logp = None  # log p of the order below, aligned with its keys
        for k in range(1, N + 1):
            keys, c = keys_of[k - 1], counts[k - 1]
            if k == 1:
                logp_k = self._unigrams(keys, c, params)
            else:
                logp_k = self._order(k, keys, c, params, prev_logp, block)
            counts[k - 1] = None  # smoothed: the counts are no longer needed
            self.keys.append(keys)
            self.logp.append(logp_k)
            self.logbow.append(np.zeros(len(keys)))
            prev_logp = logp_k

    def _unigrams(self, keys: np.ndarray, c: np.ndarray, params: dict) -> np.ndarray:
        """Log-probabilities of every id, ``<s>`` (log p = 0, as KenLM) included."""
        method, V = self.smoothing, self.vocab_size
        predicted = keys % self.base != self.bos_id  # <s> is never predicted
        cp = c[predicted]
        # estimate over the words seen; unseen ones (count 0) get only the uniform share
        seen = cp > 0
        kp = keys[predicted]
        st = sm.OrderStats(
            kp[seen], cp[seen], np.zeros(1, np.int64), np.zeros(int(seen.sum()), np.int64)
        )
        a_seen, gamma, self.info["order1"] = sm.estimate(method, st, 1, V, params)
        alpha = np.zeros(len(kp))
        alpha[seen] = a_seen
        # interpolated with the uniform p_0 = 1/V; stupid backoff: S(w) = c(w) / N
        p = alpha if method == "stupid_backoff" else alpha + gamma[0] / V
        logp = np.zeros(len(keys))
        with np.errstate(divide="ignore"):
            logp[predicted] = np.log(p)
        return logp

    def _order(self, k, keys, c, params, prev_logp, block) -> np.ndarray:
        """Log-probabilities of the k-grams (k >= 2), and the backoff weights of their
        contexts written into order k-1."""
        method, base = self.smoothing, self.base
        disc = sm.discounts(method, c, k, params)
        self.info[f"order{k}"] = dict(disc)
        logp = np.empty(len(keys))
        lower = self.keys[k - 2]
        for a, b in counting.context_blocks(keys, base, block):
            kp = keys[a:b]
            ctx_keys, ctx_index = counting.group_by_context(kp, base)
            st = sm.OrderStats(kp, c[a:b], ctx_keys, ctx_index)
            alpha, gamma, _ = sm.estimate(method, st, k, self.vocab_size, params, disc)
            if method == "stupid_backoff":  # seen: the relative frequency alone
                p = alpha
            else:
                lower_idx = np.searchsorted(lower, kp % base ** (k - 1))
                p = alpha + gamma[ctx_index] * np.exp(prev_logp[lower_idx])
            # gamma(h) is the backoff weight of the context h, an n-gram of order k-1
            with np.errstate(divide="ignore"):
                self.logbow[k - 2][np.searchsorted(lower, ctx_keys)] = np.log(gamma)
                logp[a:b] = np.log(p)
        return logp

    def _estimate_uniform(self, keys_of, counts, params) -> None:
        """Additive and MLE: the order-N estimate for each full context, uniform elsewhere."""
        N, V, base = self.order, self.vocab_size, self.base
        self._uniform = []
        for k in range(1, N + 1):
            keys, c = keys_of[k - 1], counts[k - 1]
            predicted = keys % base != self.bos_id
            kp, cp = keys[predicted], c[predicted]
            if k == 1:
                ctx_keys, ctx_index = np.zeros(1, np.int64), np.zeros(len(kp), np.int64)
            else:
                ctx_keys, ctx_index = counting.group_by_context(kp, base)
            st = sm.OrderStats(kp, cp, ctx_keys, ctx_index)
            alpha, gamma, _ = sm.estimate(self.smoothing, st, k, V, params)
            with np.errstate(divide="ignore"):
                self.keys.append(kp)
                self.logp.append(np.log(alpha + gamma[ctx_index] / V))
            self._uniform.append((ctx_keys, gamma))
            self.logbow.append(np.zeros(len(kp)))

    # -- scoring -----------------------------------------------------------------------------
    def _lookup(self, k: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        table = self.keys[k - 1]
        if not len(table):
            return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
        idx = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        return idx, table[idx] == keys

    def score_ids(self, ids: np.ndarray) -> np.ndarray:
        """Natural-log probability of every token of an id stream (lines end with ``eos_id``),
        each predicted from ``<s>`` and the words before it in its line. Vectorised: one
        lookup per order for a block of whole lines (about ``SCORE_BLOCK`` tokens), so that
        the temporaries stay small however long the stream."""
        ids = np.asarray(ids)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise NgramError(f"ids outside the vocabulary 0..{self.vocab_size - 1}")
        if len(ids) <= SCORE_BLOCK:
            return self._score_block(ids)
        line_ends = np.flatnonzero(ids == self.eos_id) + 1
        wanted = np.arange(SCORE_BLOCK, len(ids), SCORE_BLOCK)
        at = np.searchsorted(line_ends, wanted)  # the first line end at or after each
        cuts = np.unique(line_ends[at[at < len(line_ends)]])
        bounds = [0, *cuts[cuts < len(ids)].tolist(), len(ids)]
        return np.concatenate([self._score_block(ids[a:b]) for a, b in zip(bounds, bounds[1:])])

    def _score_block(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        stream, line_start = counting.pad_sentences(ids, self.eos_id, self.bos_id)
        pos = np.flatnonzero(stream != self.bos_id)[: len(ids)]
        avail = np.minimum(pos - line_start[pos], self.order - 1)  # usable context length
        if self._uniform is not None:
            return self._score_uniform(stream, pos, avail)
        out = np.full(len(pos), np.nan)
        bow_sum = np.zeros(len(pos))
        for k in range(self.order, 0, -1):
            todo = np.isnan(out) & (avail >= k - 1)
            if not todo.any():
                continue
            p_at = pos[todo]
            idx, hit = self._lookup(k, counting.keys_at(stream, p_at, k, self.base))
            sel = np.flatnonzero(todo)
            out[sel[hit]] = self.logp[k - 1][idx[hit]]
            if k > 1:  # missed: add the backoff weight of this order's context, if stored
                miss = sel[~hit]
                cidx, chit = self._lookup(
                    k - 1, counting.keys_at(stream, pos[miss] - 1, k - 1, self.base)
                )
                bow_sum[miss[chit]] += self.logbow[k - 2][cidx[chit]]
        return out + bow_sum

    def _score_uniform(self, stream, pos, avail) -> np.ndarray:
        out = np.empty(len(pos))
        V = self.vocab_size
        for k in range(1, self.order + 1):
            at = np.flatnonzero(avail == k - 1)
            if not len(at):
                continue
            idx, hit = self._lookup(k, counting.keys_at(stream, pos[at], k, self.base))
            ctx_keys, gamma = self._uniform[k - 1]
            ctx = counting.keys_at(stream, pos[at] - 1, k - 1, self.base) if k > 1 else 0 * at
            if len(ctx_keys):
                cidx = np.minimum(np.searchsorted(ctx_keys, ctx), len(ctx_keys) - 1)
                chit = ctx_keys[cidx] == ctx
            else:
                cidx, chit = np.zeros(len(at), np.int64), np.zeros(len(at), bool)
            g = gamma[cidx] if len(gamma) else np.ones(len(at))
            with np.errstate(divide="ignore"):
                unseen = np.where(chit, np.log(g / V), -np.log(V))  # no context: 1/V
            if self.smoothing == "mle":
                unseen = np.full(len(at), -np.inf)  # MLE: an unseen event has probability 0
            stored = self.logp[k - 1][idx] if len(self.logp[k - 1]) else unseen
            out[at] = np.where(hit, stored, unseen)
        return out

    def next_logprobs(self, context: list[int], at_start: bool = True) -> np.ndarray:
        """log p(w | context) for every vocabulary id w, in one vectorised call. ``at_start``:
        the context follows ``<s>`` (a sentence's first words); else it is taken from the
        middle of a sentence (then only its last order-1 words matter)."""
        ctx = list(context)[-(self.order - 1) :] if self.order > 1 else []
        pad = [] if at_start else [self.unk_id] * (self.order - 1 - len(ctx))
        V = self.vocab_size
        line = np.asarray([*pad, *ctx, 0, self.eos_id], dtype=np.int64)
        lines = np.tile(line, (V, 1))
        lines[:, len(pad) + len(ctx)] = np.arange(V)
        scores = self.score_ids(lines.ravel()).reshape(V, len(line))
        return scores[:, len(pad) + len(ctx)]

    def logprob(self, word: str, context: Iterable[str] = ()) -> float:
        """log p(word | context) for strings. A context that starts with ``<s>`` is a
        sentence's beginning; otherwise it is read as the middle of a sentence."""
        stoi = {w: i for i, w in enumerate(self.itos)}
        ctx = list(context)
        at_start = bool(ctx) and ctx[0] == BOS
        ids = [stoi.get(w, self.unk_id) for w in (ctx[1:] if at_start else ctx)]
        return float(self.next_logprobs(ids, at_start)[stoi.get(word, self.unk_id)])

    def save(self, path) -> None:
        """Every table, exactly (``.npz``, no pickle); ARPA holds only backoff-form models."""
        arrays = {
            "itos": np.asarray(self.itos),
            "meta": np.asarray([self.order, self.unk_id, self.eos_id, int(self.normalized)]),
        }
        arrays["smoothing"] = np.asarray(self.smoothing)
        for k in range(self.order):
            arrays[f"keys{k}"], arrays[f"logp{k}"] = self.keys[k], self.logp[k]
            arrays[f"logbow{k}"] = self.logbow[k]
            if self._uniform is not None:
                arrays[f"uctx{k}"], arrays[f"ugamma{k}"] = self._uniform[k]
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path, mmap: bool = True) -> NgramLM:
        """A model saved by ``save``. ``mmap``: the tables are mapped from the file rather than
        read, so a model larger than the memory budget can still score (pages are read as
        lookups touch them)."""
        try:
            z = _npz_arrays(path, mmap)
            order, unk_id, eos_id, normalized = (int(x) for x in z["meta"])
            m = cls(
                [str(w) for w in z["itos"]],
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
        except (OSError, KeyError, ValueError) as e:
            raise NgramError(f"{path}: not an ngram model file ({e})") from None
        m._check_tables(path)
        return m

    def _check_tables(self, path) -> None:
        """Values, not only the format: keys strictly increasing (lookups bisect them), and
        no NaN or +inf among the log-probabilities and weights (-inf is log 0). Read in blocks
        (from the file, for a memory map), so the check holds no copy of a large model."""
        for k in range(self.order):
            keys = self.keys[k]
            if keys.dtype != np.int64 or len(keys) != len(self.logp[k]) or not _increasing(keys):
                raise NgramError(f"{path}: the {k + 1}-gram keys are not a sorted int64 table")
            tables = [self.logp[k], self.logbow[k]]
            if self._uniform is not None:
                tables.append(self._uniform[k][1])
            for table in tables:
                if any(np.isnan(b).any() or np.isposinf(b).any() for b in _blocks(table)):
                    raise NgramError(
                        f"{path}: a {k + 1}-gram log-probability or weight is NaN or +inf"
                    )

    def perplexity(self, ids: np.ndarray) -> float:
        if not self.normalized:
            raise NgramError(
                "stupid backoff gives unnormalised scores, not probabilities: it has no perplexity"
            )
        lp = self.score_ids(ids)
        return math.exp(-lp.mean())


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


def _narrow(counts: np.ndarray) -> np.ndarray:
    """Counts as int32 where they fit (they do below 2^31 tokens): a third less memory while
    smoothing; every use of them converts to float64 or compares, so no result changes."""
    return counts.astype(np.int32) if len(counts) and counts.max() < 2**31 else counts


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
            out[name] = np.memmap(
                path,
                dtype=dtype,
                mode="r",
                offset=f.tell(),
                shape=shape,
                order="F" if fortran else "C",
            )
    return out


def check_params(method: str, params: dict) -> dict:
    allowed = {
        "lidstone": {"k"},
        "absolute": {"discount"},
        "kn": {"discount"},
        "modified_kn": {"discount_fallback"},
        "stupid_backoff": {"backoff"},
    }
    params = {k: v for k, v in params.items() if v is not None}  # unset options from config
    extra = set(params) - allowed.get(method, set())
    if extra:
        raise NgramError(f"smoothing={method} takes no option {', '.join(sorted(extra))}")
    out = dict(params)
    if method == "lidstone":
        k = out.get("k")
        if k is None or not k > 0:
            raise NgramError(f"lidstone needs k > 0 (add-k); got k={k!r}")
    if method in ("absolute", "kn") and out.get("discount") is not None:
        d = out["discount"]
        if not 0 < d <= 1:
            raise NgramError(f"discount={d!r} must be in (0, 1] for smoothing={method}")
    if method == "stupid_backoff":
        b = out.setdefault("backoff", 0.4)
        if not 0 < b < 1:
            raise NgramError(f"backoff={b!r} must be in (0, 1) for stupid backoff")
    if method == "modified_kn" and out.get("discount_fallback") is not None:
        fb = tuple(float(x) for x in out["discount_fallback"])
        if len(fb) != 3 or not all(0 < d < c for d, c in zip(fb, (1, 2, 3))):
            raise NgramError(
                f"discount_fallback={list(fb)} must be D1 in (0,1), D2 in (0,2), D3+ in (0,3)"
            )
        out["discount_fallback"] = fb
    return out
