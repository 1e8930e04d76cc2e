"""``CorpusData``: corpus -> tokens -> vocabulary (train only) -> int32 id streams, without
Lightning or torch; ``prepared_data`` builds it, or the ``LMData`` that batches it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from seqlm.data import idcache
from seqlm.data.corpora import SPLITS, Corpus
from seqlm.data.download import cache_dir
from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError

LAYOUTS = ("stream", "sentences")


def prepared_data(node, layout: str = "stream", run_dir: Path | None = None, loaders: bool = True):
    """The data of the ``data`` config ``node``, laid out for a model (``layout``), tokenized;
    its vocabulary saved in ``run_dir`` when one is given. ``loaders``: the ``LMData`` that
    batches it for a network (Lightning); else the ``CorpusData`` alone (an n-gram's)."""
    from seqlm.build import as_dict, build

    if not loaders:
        node = {**as_dict(node), "_target_": f"{__name__}.CorpusData"}
    data = build("data", node, layout=layout, _convert_="all")
    data.prepare()
    if run_dir is not None:
        data.vocab.save(run_dir / "vocab.json")
    return data


def make_corpus(name: str, target: str, options: dict) -> Corpus:
    """The corpus ``data.corpus`` names, built with its options; one line for a bad path or an
    option it does not take."""
    from hydra.utils import get_object

    try:
        factory = get_object(target)
    except Exception:
        raise SeqlmError(f"data.corpus={target!r}: no such corpus factory") from None
    try:
        return factory(**options)
    except TypeError as e:
        raise SeqlmError(f"data={name}: unknown option ({e})") from None


class CorpusData:
    """Token streams of one corpus: its vocabulary (from train), int32 ids of every split, the
    facts and agreement probes evaluation reports. No Lightning, no torch: what an n-gram's
    evaluation reads (``LMData`` adds the batches a network trains and evaluates on).

    Args:
        name: the data set's name, in metrics (``data/name``) and cache files.
        corpus: the dotted path of the corpus's factory (``seqlm.data.corpora.ptb``), called
            with ``**options``.
        batch_size: parallel streams (or sentences, for the cloze layout) per training batch,
            per process.
        eval_batch_size: parallel streams when evaluating; the same for any number of processes.
        bptt: window length of truncated back-propagation through time.
        variable_bptt: draw window lengths as AWD-LSTM does.
        min_freq: keep training words seen at least this often; rarer ones become ``<unk>``.
        max_size: keep at most this many vocabulary entries (``<unk>`` and ``<eos>`` included).
        seed: seeds window lengths and sentence shuffling.
        use_cache: keep token ids in the id cache (``seqlm.data.idcache``), keyed by a content
            hash: a second run does not tokenize again, and every run memory-maps the ids.
        layout: ``stream`` (contiguous windows, left-to-right models) or ``sentences`` (padded
            lines, the cloze model): the ``layout`` of the network the data feeds.
        **options: the corpus's own (``root``, ``tokenizer``, ``path``, ``max_chunks``, ...).

    The shipped defaults are in ``conf/data/_base.yaml`` and the presets beside it.
    """

    def __init__(
        self,
        *,
        name: str,
        corpus: str,
        batch_size: int,
        eval_batch_size: int,
        bptt: int,
        variable_bptt: bool,
        min_freq: int,
        max_size: int | None,
        seed: int,
        use_cache: bool,
        layout: str = "stream",
        **options,
    ):
        super().__init__()  # LMData's Lightning base, when this is one
        for opt, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("bptt", bptt),
        ):
            if not isinstance(value, int) or value < 1:
                raise SeqlmError(f"data.{opt}={value!r} must be a positive integer")
        self.corpus = make_corpus(name, corpus, options)
        self.name = name
        self.batch_size, self.eval_batch_size, self.bptt = batch_size, eval_batch_size, bptt
        self.variable_bptt, self.seed = variable_bptt, seed
        self.min_freq, self.max_size, self.use_cache = min_freq, max_size, use_cache
        if layout not in LAYOUTS:
            raise SeqlmError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}")
        self.layout = layout
        self.vocab: Vocab | None = None
        self.ids: dict[str, np.ndarray] = {}
        self.rank, self.world_size = 0, 1
        self.stream = None  # this epoch's training stream (LMData)

    # -- tokens and vocabulary ---------------------------------------------------------------
    def _cache_key(self) -> str:
        h = hashlib.sha256(self.corpus.key().encode())
        h.update(repr((self.name, self.min_freq, self.max_size)).encode())
        return h.hexdigest()[:24]

    def prepare(self) -> None:
        """Tokenize, build the vocabulary from train, encode all splits; with ``use_cache``,
        into the id cache (``seqlm.data.idcache``), or memory-mapped from it when it is there."""
        if self.vocab is not None:
            return
        if not self.use_cache:
            self.vocab, self.ids = self._encode(None)
            return
        folder = cache_dir() / "ids" / f"{self.name}-{self._cache_key()}"
        self.vocab, self.ids = idcache.build(folder, SPLITS, self._encode)

    def _encode(self, folder: Path | None) -> tuple[Vocab, dict[str, np.ndarray]]:
        """One streaming pass over train (vocabulary and ids together), one over each other
        split; the ids in memory, or written to ``folder/{split}.ids`` as they come."""
        where = {
            s: None if folder is None else folder / idcache.SPLIT_FILE.format(s) for s in SPLITS
        }
        vocab, train = Vocab.build_encoded(
            self.corpus.lines("train"), self.min_freq, self.max_size, where["train"]
        )
        ids = {"train": train}
        ids.update({s: vocab.to_array(self.corpus.lines(s), where[s]) for s in SPLITS[1:]})
        return vocab, ids

    # -- what evaluation needs beside the tokens ---------------------------------------------
    def extras(self, split: str) -> dict[str, np.ndarray]:
        """Per-target ``wrong``/``distance`` arrays of the corpus's agreement probes, if any."""
        p = self.corpus.probes(split, self.vocab.stoi)
        if p is None:
            return {}
        from seqlm.data.batching import IGNORE

        n = len(self.ids[split])
        wrong = np.full(n, IGNORE, dtype=np.int64)
        dist = np.full(n, IGNORE, dtype=np.int64)
        wrong[p["index"]] = p["wrong"]
        dist[p["index"]] = p["distance"]
        return {"wrong": wrong, "distance": dist}

    def info(self) -> dict[str, float | int | str]:
        """Facts about the data set that belong beside a run's metrics."""
        out: dict[str, float | int | str] = {
            "data/name": self.name,
            "data/vocab_size": len(self.vocab),
            "data/vocab_hash": self.vocab.digest(),
            "data/train_tokens": len(self.ids["train"]),
            "data/test_hash": hashlib.sha256(self.ids["test"].tobytes()).hexdigest()[:16],
        }
        for split, stage in (("valid", "val"), ("test", "test")):
            out.update({f"{stage}/{k}": v for k, v in self.corpus.facts(split).items()})
        return out
