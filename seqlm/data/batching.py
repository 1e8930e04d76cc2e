"""Batching: contiguous streams for truncated BPTT, and padded sentences for the cloze model.

Every loader here yields ready-made batches (``DataLoader(batch_size=None)``): dicts with
``input`` and ``target`` ``(B, T)`` int64 tensors, targets ``IGNORE`` where padded, plus, when
the split carries agreement probes, ``wrong`` (the wrong inflection's id, or ``IGNORE``) and
``distance`` laid out like ``target``. Training stream batches also carry ``window``, their
index in the epoch, which the data module records once the batch is trained on (resume), and,
with AWD-LSTM's variable window lengths, ``bptt``: the nominal length (the learning rate of the
step is scaled by the window's length over it, ``LitLM``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

IGNORE = -100  # torch.nn.functional.cross_entropy's default ignore_index


def _check_world(rank: int, world_size: int) -> None:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")


class TrainStream(IterableDataset):
    """Stateful truncated-BPTT batches over one token stream.

    The stream (with one ``<eos>`` in front, so that its first token is a target too) is cut
    into ``world_size * batch_size`` contiguous streams of equal length ``L``; rank ``r`` reads
    streams ``r*B .. r*B+B-1``. Windows of ``bptt`` tokens are read left to right, never
    shuffled, so the model's state at the end of one window is the right state for the next.
    The last ``len % (W*B)`` tokens are dropped (the same on every rank, so every rank runs the
    same number of windows). With ``variable_bptt`` the window length is drawn as in AWD-LSTM
    (Merity et al. 2018, sec. 4.1): ``bptt`` w.p. 0.95 else ``bptt/2``, plus N(0, 5) noise,
    at least 5; the draw is seeded by ``seed`` and the epoch, hence the same on every rank.
    Its batches carry ``bptt``, for the learning rate's scaling.
    """

    def __init__(
        self,
        ids: np.ndarray,
        eos_id: int,
        batch_size: int,
        bptt: int,
        rank: int = 0,
        world_size: int = 1,
        variable_bptt: bool = False,
        seed: int = 0,
    ):
        _check_world(rank, world_size)
        n_streams = batch_size * world_size
        length = len(ids) // n_streams
        if length < 2:
            raise ValueError(
                f"{len(ids)} training tokens are too few for {n_streams} streams "
                f"(batch_size={batch_size} x world_size={world_size})"
            )
        # Views, never copies: ``ids`` may be a memory-mapped corpus larger than memory, and
        # each window is read from it (and widened to int64) when it is yielded. Row r's
        # targets are ids[r*L : (r+1)*L], its inputs the tokens one before (<eos> first).
        rows = range(rank * batch_size, (rank + 1) * batch_size)
        self._targets = ids[: n_streams * length].reshape(n_streams, length)[rows.start : rows.stop]
        self._first = np.asarray([eos_id if r == 0 else ids[r * length - 1] for r in rows])
        self.rows, self.length = rows, length
        self.bptt = bptt
        self.variable_bptt = variable_bptt
        self.seed = seed
        self.epoch = 0
        self.dropped = len(ids) - n_streams * length
        self.start = 0  # the first window to yield (after a mid-epoch resume)
        self.trained = 0  # windows of this epoch the model has trained on

    @property
    def targets(self) -> torch.Tensor:
        """This rank's (B, L) targets, all of them (tests and DDP checks read them)."""
        return torch.from_numpy(np.asarray(self._targets, dtype=np.int64))

    @property
    def target_index(self) -> torch.Tensor:
        """Which stream-target index each (row, column) trains on (tests and DDP checks)."""
        return torch.arange(self.rows.start * self.length, self.rows.stop * self.length).reshape(
            len(self.rows), self.length
        )

    def window(self, i: int, n: int) -> dict[str, torch.Tensor]:
        """The (B, n) inputs and targets of the window of columns ``i .. i+n-1``."""
        target = np.asarray(self._targets[:, i : i + n], dtype=np.int64)
        if i:
            inputs = np.asarray(self._targets[:, i - 1 : i + n - 1], dtype=np.int64)
        else:
            inputs = np.empty_like(target)
            inputs[:, 0] = self._first
            inputs[:, 1:] = self._targets[:, : n - 1]
        return {"input": torch.from_numpy(inputs), "target": torch.from_numpy(target)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start, self.trained = epoch, 0, 0

    # -- the position in the stream, saved in checkpoints for a mid-epoch resume --------------
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "next_window": self.trained}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start at the saved window, when the checkpoint is from this epoch."""
        if state.get("epoch") == self.epoch:
            self.start = self.trained = int(state["next_window"])

    def windows(self) -> list[tuple[int, int]]:
        """(start, length) of each window of this epoch."""
        length = self.length
        if not self.variable_bptt:
            return [(i, min(self.bptt, length - i)) for i in range(0, length, self.bptt)]
        rng = np.random.default_rng([self.seed, self.epoch])
        out, i = [], 0
        while i < length:
            base = self.bptt if rng.random() < 0.95 else self.bptt / 2
            n = max(5, int(rng.normal(base, 5)))
            out.append((i, min(n, length - i)))
            i += n
        return out

    def __len__(self) -> int:
        return len(self.windows())

    def __iter__(self):
        for w, (i, n) in enumerate(self.windows()):
            if w >= self.start:
                batch = {**self.window(i, n), "window": w}
                if self.variable_bptt:
                    batch["bptt"] = self.bptt
                yield batch


class StreamLoader(DataLoader):
    """A ``DataLoader`` over a ``TrainStream`` whose position Lightning saves in checkpoints
    and restores before iterating (its ``state_dict``/``load_state_dict`` protocol)."""

    def state_dict(self) -> dict[str, int]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.dataset.load_state_dict(state)


class EvalStream(IterableDataset):
    """Every target of a split exactly once, in ``batch_size`` contiguous streams.

    Targets are ``ids[0..N-1]``; target ``j``'s input is ``ids[j-1]`` (an ``<eos>`` before the
    first). The N targets are cut into ``batch_size`` streams of ``ceil(N / B)``; the last
    stream is padded with ``IGNORE`` targets. Each stream's first input is the token before
    its first target, so nothing is dropped and nothing is scored twice. The layout does not
    depend on how many processes evaluate: under DDP each rank takes whole rows (``rows``)."""

    def __init__(
        self,
        ids: np.ndarray,
        eos_id: int,
        batch_size: int,
        bptt: int,
        extras: dict[str, np.ndarray] | None = None,
        rows: slice | None = None,
    ):
        n = len(ids)
        batch_size = max(1, min(batch_size, n))
        length = math.ceil(n / batch_size)
        pad = batch_size * length - n
        inputs = np.concatenate([[eos_id], ids[:-1], np.full(pad, eos_id)]).astype(np.int64)
        targets = np.concatenate([ids, np.full(pad, IGNORE)]).astype(np.int64)
        rows = rows or slice(None)
        self.tensors = {
            "input": torch.from_numpy(inputs.reshape(batch_size, length)[rows].copy()),
            "target": torch.from_numpy(targets.reshape(batch_size, length)[rows].copy()),
        }
        for key, arr in (extras or {}).items():
            padded = np.concatenate([arr, np.full(pad, IGNORE)]).astype(np.int64)
            self.tensors[key] = torch.from_numpy(padded.reshape(batch_size, length)[rows].copy())
        self.bptt = bptt
        self.length = length

    def __len__(self) -> int:
        return math.ceil(self.length / self.bptt)

    def __iter__(self):
        for i in range(0, self.length, self.bptt):
            yield {k: v[:, i : i + self.bptt] for k, v in self.tensors.items()}


def sentence_bounds(ids: np.ndarray, eos_id: int) -> np.ndarray:
    """(start, end) of each line in the stream, its ``<eos>`` included; shape (S, 2)."""
    ends = np.flatnonzero(ids == eos_id) + 1
    if len(ends) == 0 or ends[-1] != len(ids):
        ends = np.append(ends, len(ids))
    starts = np.concatenate([[0], ends[:-1]])
    return np.stack([starts, ends], axis=1)


def line_ids(ids: np.ndarray, eos_id: int) -> list[list[int]]:
    """The lines of an id stream whose lines end with ``eos_id``, as lists of ids without it."""
    return [ids[a : b - 1].tolist() for a, b in sentence_bounds(ids, eos_id)]


class SentenceBatches(IterableDataset):
    """Padded batches of whole lines for the bidirectional cloze model.

    Line ``w_1 .. w_n <eos>`` becomes ``<eos> w_1 .. w_n <eos> <eos>``: the outer ``<eos>`` are
    the sentence boundaries both directions start from, and the targets are the ``n + 1``
    tokens in between, so every token of the split, ``<eos>`` included, is a target once.
    ``input`` is ``(B, T+2)``, ``target`` ``(B, T)`` with ``target[:, t]`` = ``input[:, t+1]``.
    Training batches are shuffled (seeded by epoch); evaluation keeps the corpus order.
    Under DDP rank ``r`` takes every ``W``-th batch of a list trimmed to a multiple of ``W``
    (training), or every ``W``-th batch with nothing trimmed (evaluation)."""

    def __init__(
        self,
        ids: np.ndarray,
        eos_id: int,
        batch_size: int,
        shuffle: bool,
        extras: dict[str, np.ndarray] | None = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ):
        _check_world(rank, world_size)
        self.ids = ids  # int32, perhaps memory-mapped: rows are copied into each batch
        self.bounds = sentence_bounds(ids, eos_id)
        self.eos_id = eos_id
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.extras = {k: v.astype(np.int64) for k, v in (extras or {}).items()}
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        order = np.arange(len(self.bounds))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            batches = batches[: len(batches) - len(batches) % self.world_size] or batches[:1]
        return batches[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self):
        for sel in self._batches():
            starts, ends = self.bounds[sel, 0], self.bounds[sel, 1]
            width = int((ends - starts).max())
            inp = np.full((len(sel), width + 2), self.eos_id, dtype=np.int64)
            out = {"target": np.full((len(sel), width), IGNORE, dtype=np.int64)}
            out.update({k: np.full((len(sel), width), IGNORE, dtype=np.int64) for k in self.extras})
            for row, (a, b) in enumerate(zip(starts, ends)):
                inp[row, 1 : 1 + b - a] = self.ids[a:b]
                out["target"][row, : b - a] = self.ids[a:b]
                for k, arr in self.extras.items():
                    out[k][row, : b - a] = arr[a:b]
            yield {
                "input": torch.from_numpy(inp),
                **{k: torch.from_numpy(v) for k, v in out.items()},
            }
