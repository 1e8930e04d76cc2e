"""Counting on a Dask cluster: the counts of ``counting.count_ngrams``, bit for bit, from
shards counted on workers (``pip install seqlm[dask]``; nothing else imports dask).

The stream is cut at line ends into shards (an n-gram never crosses a line, so never a shard),
each saved as a ``.npy`` file in a folder every worker can read (``$TMPDIR`` or ``-T``: on a
cluster of several machines, a shared file system). Order by order:

- **map**: each shard's sorted (key, count) pairs of order k, a task per shard. Order k's keys
  need the index of each token's (k-1)-gram, which the shard's task of the order before wrote
  beside it (int64 a token).
- **reduce**: the shards' sorted pairs merged by key, two at a time (a tree of tasks); the sum
  of integer counts does not depend on how they are grouped, so any shard sizes and any tree
  give the same table.
- **index**: each shard's tokens looked up in the merged table, for the next order.

What crosses the network per order is each shard's distinct n-grams (16 bytes each: key and
count) on their way to the reduce, and the merged table (8 bytes an n-gram) on its way to the
shards' index tasks. The estimation then runs on the machine that asked, the same code as
without Dask (``Estimation._estimate``).

Every task is a pure function of files and of other tasks' results: when a worker is lost,
the scheduler reruns what it held, and the rerun gives the same bytes. A task that keeps
killing workers ends the fit with one line (Dask's ``KilledWorker``), never a different model.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from ngram import keys as trie
from ngram.counting import _chunk_keys, _dedup_sorted, line_positions, spill_folder
from ngram.errors import NgramError

SHARD_TOKENS = 1 << 21  # at most this many tokens a shard (~100 MB of temporaries per task)
FAULT_ENV = "NGRAM_DASK_FAULT_ONCE"  # tests: the first counting task to see it kills its worker


def count_on_dask(
    ids: np.ndarray,
    order: int,
    base: int,
    eos_id: int,
    bos_id: int,
    address: str,
    cuts: list[int] | None = None,
    report: dict | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``counting.count_ngrams``'s result, counted on the Dask cluster at ``address``
    (``local:N``: a local cluster of N worker processes; else a scheduler's address, e.g.
    ``tcp://host:8786``). ``cuts``: where the shards start (line starts; default: equal shards,
    at least two a worker). ``report``: a dict that gets the workers, the shards, the bytes
    the map sent to the reduce and the reduce to the index tasks, and each worker's peak
    resident memory."""
    client, cluster = connect(address)
    try:
        workers = max(1, len(client.scheduler_info()["workers"]))
        with spill_folder() as tmp:
            paths = _write_shards(ids, eos_id, Path(tmp), cuts or _cuts(ids, eos_id, workers))
            stats = {"workers": workers, "shards": len(paths), "map_bytes": 0, "table_bytes": 0}
            out = _count(client, paths, order, base, eos_id, bos_id, stats)
            peaks = client.run(_peak_rss)
            stats["worker_peak_mb"] = sorted(round(v / 2**20) for v in peaks.values())
            if report is not None:
                report.update(stats)
            return out
    except NgramError:
        raise
    except Exception as e:  # KilledWorker, a lost scheduler, a worker that cannot read the files
        why = str(e).splitlines()[0] if str(e) else ""
        raise NgramError(
            f"--dask {address}: counting failed ({type(e).__name__}: {why}); no model was written"
        ) from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def connect(address: str):
    """(client, the local cluster it started or None), or one line saying why not."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise NgramError(
            "--dask needs dask.distributed: pip install 'seqlm[dask]' (or dask[distributed])"
        ) from None
    workers = check_address(address)
    if workers is not None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return Client(cluster), cluster
    try:
        return Client(address, timeout="3s"), None
    except (OSError, TimeoutError) as e:
        raise NgramError(f"--dask {address}: cannot reach the scheduler ({e})") from None


def check_address(address: str) -> int | None:
    """The number of local workers ``local:N`` asks for, None for a scheduler's address, or
    one line saying what is wrong (before any text is read)."""
    if address.startswith("local:"):
        n = address.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise NgramError(f"--dask {address}: give local:N with N >= 1 worker processes")
        return int(n)
    if "://" not in address:
        raise NgramError(f"--dask {address}: give local:N or a scheduler address (tcp://host:port)")
    return None


def _cuts(ids: np.ndarray, eos_id: int, workers: int) -> list[int]:
    """Shard starts at line starts: about equal shards, at least two a worker, at most
    ``SHARD_TOKENS`` tokens each (a line longer than that stays whole)."""
    n = len(ids)
    shards = max(2 * workers, math.ceil(n / SHARD_TOKENS))
    line_starts = np.flatnonzero(np.asarray(ids) == eos_id) + 1
    wanted = np.arange(1, shards) * n // shards
    at = np.searchsorted(line_starts, wanted)
    starts = line_starts[at[at < len(line_starts)]]
    return sorted({0, *starts[starts < n].tolist()})


def _write_shards(ids: np.ndarray, eos_id: int, folder: Path, cuts: list[int]) -> list[str]:
    if cuts[0] != 0 or any(b <= a for a, b in zip(cuts, cuts[1:])) or cuts[-1] >= len(ids):
        raise NgramError(f"shard starts {cuts[:5]}...: must rise from 0 inside the stream")
    bounds = [*cuts, len(ids)]
    paths = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        if a and ids[a - 1] != eos_id:
            raise NgramError(f"shard {i} starts at token {a}, inside a line")
        path = folder / f"shard{i}.npy"
        np.save(path, np.ascontiguousarray(ids[a:b]))
        paths.append(str(path))
    return paths


def _count(client, paths, order, base, eos_id, bos_id, stats):
    unigrams = client.submit(_sum, [client.submit(_unigrams, p, base) for p in paths]).result()
    unigrams[bos_id] = unigrams[eos_id]  # one <s> a line: a context, which ARPA lists
    first = np.flatnonzero(unigrams)
    out = [(first, unigrams[first])]
    nodes = [None] * len(paths)
    for k in range(2, order + 1):
        trie.check_contexts(len(out[-1][0]) if k > 2 else base, base, k)
        parts = [
            client.submit(_shard_counts, p, nd, k, base, eos_id, bos_id)
            for p, nd in zip(paths, nodes)
        ]
        stats["map_bytes"] += sum(client.gather([client.submit(_nbytes, p) for p in parts]))
        while len(parts) > 1:  # a tree of pairwise merges
            pairs = zip(parts[0::2], parts[1::2])
            merged = [client.submit(_merge, a, b) for a, b in pairs]
            parts = merged + (parts[-1:] if len(parts) % 2 else [])
        table = parts[0]
        out.append(table.result())
        if k < order:
            # to the index tasks: once to each worker that holds shards (Dask keeps it there)
            stats["table_bytes"] += out[-1][0].nbytes * min(len(paths), stats["workers"])
            nodes = [
                client.submit(_shard_nodes, p, nd, k, base, eos_id, bos_id, table)
                for p, nd in zip(paths, nodes)
            ]
            client.gather(nodes)  # every shard's index written before the next order reads it
    return out


# -- the tasks (module functions: workers import them by name) -------------------------------
def _line_index(ids: np.ndarray, eos_id: int) -> np.ndarray:
    return next(line_positions(ids, eos_id, len(ids)))[2]


def _nbytes(part) -> int:
    return part[0].nbytes + part[1].nbytes


def _peak_rss() -> int:
    """This worker's peak resident memory, bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _unigrams(path: str, base: int) -> np.ndarray:
    return np.bincount(np.load(path, mmap_mode="r"), minlength=base).astype(np.int64)


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    return np.sum(parts, axis=0)


def _shard_counts(path, nodes, k, base, eos_id, bos_id):
    """A shard's sorted distinct order-k keys and their counts."""
    fault = os.environ.get(FAULT_ENV)
    if fault and not os.path.exists(fault):  # a worker dies in the middle of counting (tests)
        Path(fault).touch()
        os._exit(1)
    ids = np.load(path, mmap_mode="r")
    prev = None if nodes is None else np.load(nodes)
    keys = _chunk_keys(ids, 0, len(ids), _line_index(ids, eos_id), k, base, bos_id, prev)[1]
    u, c = np.unique(keys, return_counts=True)
    return u, c.astype(np.int64)


def _merge(a, b):
    keys = np.concatenate([a[0], b[0]])
    counts = np.concatenate([a[1], b[1]])
    order = np.argsort(keys, kind="stable")
    return _dedup_sorted(keys[order], counts[order])


def _shard_nodes(path, nodes, k, base, eos_id, bos_id, table) -> str:
    """Each token's index in order k's table (-1: none ends there), saved beside the shard."""
    ids = np.load(path, mmap_mode="r")
    prev = None if nodes is None else np.load(nodes)
    ok, key = _chunk_keys(ids, 0, len(ids), _line_index(ids, eos_id), k, base, bos_id, prev)
    node = np.full(len(ids), -1, dtype=np.int64)
    node[ok] = trie.lookup(table[0], key)[0]
    out = f"{path[:-4]}.nodes{k}.npy"
    np.save(out, node)
    return out
