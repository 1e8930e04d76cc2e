"""Corpora: the real files in ../shared/data, the text corpus, downloads from a local server."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import threading
import time
from functools import partial

import numpy as np
import pytest
from conftest import preset, shared

from seqlm.data import idcache
from seqlm.data.corpora import FileCorpus, TextCorpus, read_text
from seqlm.data.download import download, sha256_text_bytes
from seqlm.errors import SeqlmError


def test_ptb_counts_match_its_readme():
    d = preset("data", "ptb", root=str(shared("ptb")))
    d.prepare()
    assert {s: len(v) for s, v in d.ids.items()} == {"train": 929589, "valid": 73760, "test": 82430}
    assert len(d.vocab) == 10000
    assert d.ids["train"].dtype == np.int32
    assert int((d.ids["test"] == d.vocab.eos_id).sum()) == 3761  # one <eos> per line
    assert sha256_text_bytes(d.corpus.path("test")) == d.corpus.sha256["test"]


def test_wikitext2_counts_match_its_readme():
    d = preset("data", "wikitext2", root=str(shared("wikitext-2")))
    d.prepare()
    assert {s: len(v) for s, v in d.ids.items()} == {
        "train": 2088628,
        "valid": 217646,
        "test": 245569,
    }
    assert len(d.vocab) == 33278


def test_chinese_novel_by_characters(tmp_path):
    path = shared("hongloumeng") / "hongloumeng.txt.gz"
    d = preset("data", "text", path=str(path), tokenizer="char", use_cache=False)
    d.prepare()
    assert 3000 < len(d.vocab) < 4600  # distinct characters seen in train
    assert "贾" in d.vocab.stoi and "宝" in d.vocab.stoi
    lines = read_text(path).splitlines()
    # contiguous split by lines, every line (blank ones too) ends with <eos>
    assert sum(int((d.ids[s] == 1).sum()) for s in ("train", "valid", "test")) == len(lines)


def test_hongloumeng_is_split_by_chapter_and_cleaned():
    root = shared("hongloumeng")
    corpus = preset("data", "hongloumeng", root=str(root), use_cache=False).corpus
    chapters = corpus.by_chapter()
    assert len(chapters) == 120
    numbers = "".join(c[0][: c[0].index("回")] for c in chapters)
    assert chapters[0][0].startswith("第一回") and chapters[-1][0].startswith("第一二零回")
    assert chapters[107][0].startswith("第一零八回") and chapters[108][0].startswith("第一零九回")
    assert "第四回中" not in numbers  # a line that mentions a chapter inside the text is not one
    text = "".join(p for c in chapters for p in c)
    assert not any(ch in text for ch in '．`"\r\t')  # one full stop, curly quotes, no CR
    assert not any("\u0400" <= ch <= "\u04ff" or "\u3040" <= ch <= "\u30ff" for ch in text)
    assert text.count("“") - text.count("”") < 0.3 * text.count("“")  # pairs, mostly
    lines = {s: list(corpus.lines(s)) for s in ("train", "valid", "test")}
    assert lines["valid"][0][:6] == list("第一零九回") + ["▁"]
    assert lines["test"][0][:6] == list("第一一五回") + ["▁"]
    assert sum(map(len, lines["train"])) > 700_000 and sum(map(len, lines["test"])) > 40_000


def test_second_run_reads_the_id_cache(tmp_path, monkeypatch):
    f = tmp_path / "t.txt"
    f.write_text("a b c\n" * 50 + "d e\n" * 50)
    first = preset("data", "text", path=str(f))
    first.prepare()
    calls = []
    monkeypatch.setattr(TextCorpus, "lines", lambda self, s: calls.append(s) or [])
    again = preset("data", "text", path=str(f))
    again.prepare()
    assert calls == [] and again.vocab == first.vocab
    np.testing.assert_array_equal(again.ids["test"], first.ids["test"])
    f.write_text("a b c\n" * 51 + "d e\n" * 50)  # new content, new key: tokenized again
    changed = preset("data", "text", path=str(f))
    changed.prepare()
    assert calls


def test_the_id_cache_is_memory_mapped_and_equals_the_in_memory_encoding(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    f = tmp_path / "t.txt"
    f.write_text("".join(f"w{i % 7} w{i % 3} x\n" for i in range(300)))
    mapped = preset("data", "text", path=str(f))
    mapped.prepare()
    plain = preset("data", "text", path=str(f), use_cache=False)
    plain.prepare()
    assert mapped.vocab == plain.vocab
    for split in ("train", "valid", "test"):
        assert isinstance(mapped.ids[split], np.memmap) and mapped.ids[split].dtype == np.int32
        np.testing.assert_array_equal(mapped.ids[split], plain.ids[split])
    (folder,) = (tmp_path / "cache" / "ids").iterdir()  # one folder, no temporary left
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "test.ids",
        "train.ids",
        "valid.ids",
        "vocab.json",
    ]


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda d: (d / "manifest.json").unlink(), "unreadable manifest or vocabulary"),
        (lambda d: (d / "manifest.json").write_text("[1, 2]"), "manifest.json is not a manifest"),
        (
            lambda d: (d / "train.ids").write_bytes((d / "train.ids").read_bytes()[:-4]),
            "bytes, not",
        ),
        (
            lambda d: (d / "test.ids").write_bytes(b"\1\0\0\0" + (d / "test.ids").read_bytes()[4:]),
            "test.ids fails its checksum",
        ),
        (
            lambda d: (d / "vocab.json").write_text('["<unk>", "<eos>", "zz"]'),
            "vocab.json does not",
        ),
    ],
)
def test_a_damaged_id_cache_is_rebuilt_with_one_line_never_read(
    tmp_path, monkeypatch, capsys, damage, why
):
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    f = tmp_path / "t.txt"
    f.write_text("".join(f"w{i % 7} w{i % 3} x\n" for i in range(300)))
    first = preset("data", "text", path=str(f))
    first.prepare()
    want = {s: np.array(first.ids[s]) for s in first.ids}
    (folder,) = (tmp_path / "cache" / "ids").iterdir()
    damage(folder)
    capsys.readouterr()
    again = preset("data", "text", path=str(f))
    again.prepare()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"seqlm: the id cache {folder} is damaged (")
    assert why in err[0] and err[0].endswith("; rebuilding it")
    assert again.vocab == first.vocab
    for split, ids in want.items():
        np.testing.assert_array_equal(again.ids[split], ids)
    third = preset("data", "text", path=str(f))  # rebuilt whole: read quietly
    third.prepare()
    assert capsys.readouterr().err == ""


def test_a_run_killed_while_tokenizing_leaves_no_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    f = tmp_path / "t.txt"
    f.write_text("a b c\n" * 100)
    data = preset("data", "text", path=str(f))

    def dies(self, split):
        if split == "test":
            raise KeyboardInterrupt  # as a kill would cut it: after train and valid were written
        return TextCorpus.lines.__wrapped__(self, split)

    real = TextCorpus.lines
    dies.__wrapped__ = real
    monkeypatch.setattr(TextCorpus, "lines", dies)
    with pytest.raises(KeyboardInterrupt):
        data.prepare()
    assert list((tmp_path / "cache" / "ids").iterdir()) == []
    # a folder a killed process of this host left (its pid is gone) is removed by the next
    # build; one of another host (a node sharing the file system) is not judged by a pid
    stem = tmp_path / "cache" / "ids" / f"{data.name}-{data._cache_key()}"
    stale = stem.with_name(f"{stem.name}.tmp-{socket.gethostname()}-999999999")
    other = stem.with_name(f"{stem.name}.tmp-node-7.cluster-999999999")
    for folder in (stale, other):
        folder.mkdir()
        (folder / "train.ids").write_bytes(b"\0" * 12)
    monkeypatch.setattr(TextCorpus, "lines", real)
    again = preset("data", "text", path=str(f))
    again.prepare()
    assert not stale.exists() and len(again.ids["train"]) > 0
    assert other.exists()
    # untouched for a day, it is abandoned too
    old = time.time() - idcache.STALE_S - 60
    os.utime(other, (old, old))
    idcache.remove_abandoned(stem)
    assert not other.exists()


def test_text_corpus_three_files_and_fractions(tmp_path):
    for s in ("train", "valid", "test"):
        (tmp_path / f"{s}.txt").write_text(f"{s} words here\n")
    c = TextCorpus(
        train=str(tmp_path / "train.txt"),
        valid=str(tmp_path / "valid.txt"),
        test=str(tmp_path / "test.txt"),
    )
    assert list(c.lines("valid")) == [["valid", "words", "here"]]
    (tmp_path / "all.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    c = TextCorpus(path=str(tmp_path / "all.txt"), fractions=(0.8, 0.1, 0.1))
    assert [len(list(c.lines(s))) for s in ("train", "valid", "test")] == [80, 10, 10]
    assert next(c.lines("valid")) == ["line", "80"]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"caf\xe9 au lait\n", r"not UTF-8 \(byte 3"),
        (b"one line\r\ncaf\xe9\n", r"not UTF-8 \(byte 13"),  # counted across lines
    ],
)
def test_bad_files_get_one_line_errors(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(SeqlmError, match=message) as e:
        preset("data", "text", train=str(f), valid=str(f), test=str(f), use_cache=False).prepare()
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_bad_options_are_named(tmp_path):
    with pytest.raises(SeqlmError, match="data.corpus='seqlm.data.corpora.ptbb': no such corpus"):
        preset("data", "ptb", corpus="seqlm.data.corpora.ptbb")
    with pytest.raises(SeqlmError, match="data=ptb: unknown option"):
        preset("data", "ptb", chapters=[1, 2])
    with pytest.raises(SeqlmError, match="data.bptt=0 must be a positive integer"):
        preset("data", "agreement", bptt=0)
    with pytest.raises(SeqlmError, match="data=text needs data.path"):
        preset("data", "text")
    with pytest.raises(SeqlmError, match="data.root='/nonexistent' is not a folder"):
        preset("data", "ptb", root="/nonexistent").prepare()
    with pytest.raises(SeqlmError, match="has neither ptb.train.txt nor ptb.train.txt.gz"):
        preset("data", "ptb", root=str(tmp_path)).prepare()
    with pytest.raises(SeqlmError, match=r"data.chapters=\[114, 108\] must be 1 <= a < b < 120"):
        preset("data", "hongloumeng", chapters=[114, 108])
    with pytest.raises(SeqlmError, match="data=ptb: unknown option"):
        preset("data", "ptb", colour="blue")


# -- downloads, against a server on 127.0.0.1 ------------------------------------------------
@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def _fixture_corpus(root, base, tamper_test=False):
    texts = {s: f" the {s} text \n a line \n".encode() for s in ("train", "valid", "test")}
    sha = {s: hashlib.sha256(t).hexdigest() for s, t in texts.items()}
    for s, t in texts.items():
        (root / f"tiny.{s}.txt").write_bytes(t + b"tampered" if tamper_test and s == "test" else t)
    return FileCorpus(
        "tiny", {s: f"tiny.{s}.txt" for s in texts}, {s: f"{base}/tiny.{s}.txt" for s in texts}, sha
    )


def test_download_once_checked_and_cached(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    root, base = server
    corpus = _fixture_corpus(root, base)
    assert list(corpus.lines("test")) == [["the", "test", "text"], ["a", "line"]]
    assert (tmp_path / "cache" / "tiny" / "tiny.test.txt").exists()
    (root / "tiny.test.txt").unlink()  # the server no longer has it: the cache answers
    assert next(corpus.lines("test")) == ["the", "test", "text"]


def test_corrupted_download_is_refused_and_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    root, base = server
    corpus = _fixture_corpus(root, base, tamper_test=True)
    with pytest.raises(SeqlmError, match="tiny.test.txt: downloaded file has sha256 .* refusing"):
        corpus.lines("test")
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []  # no partial, no bad file


def test_hongloumeng_is_downloaded_once_and_checked(server, tmp_path, monkeypatch):
    import gzip

    from seqlm.data import corpora

    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    root, base = server
    raw = gzip.decompress((shared("hongloumeng") / "hongloumeng.txt.gz").read_bytes())
    (root / "hlm.txt").write_bytes(raw)
    monkeypatch.setattr(corpora, "_HLM_URL", f"{base}/hlm.txt")
    corpus = preset("data", "hongloumeng", use_cache=False).corpus
    assert corpus.path() == tmp_path / "cache" / "hongloumeng" / "hongloumeng.txt"
    assert hashlib.sha256(corpus.path().read_bytes()).hexdigest() == corpora.HONGLOUMENG_SHA256
    (root / "hlm.txt").write_bytes(raw[:-10])  # changed upstream: a fresh cache refuses it
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "other"))
    with pytest.raises(SeqlmError, match="downloaded file has sha256 .* refusing"):
        corpus.path()


def test_unreachable_url_says_how_to_give_the_files(tmp_path):
    with pytest.raises(SeqlmError, match="download failed .* data.root=DIR"):
        download("http://127.0.0.1:9/none.txt", tmp_path / "none.txt", "0" * 64, timeout=2)


def test_gzipped_files_are_read_and_hashed_uncompressed(tmp_path):
    raw = b" a b \n"
    (tmp_path / "x.txt.gz").write_bytes(gzip.compress(raw))
    assert read_text(tmp_path / "x.txt.gz") == raw.decode()
    assert sha256_text_bytes(tmp_path / "x.txt.gz") == hashlib.sha256(raw).hexdigest()


def _wikitext103_zip(root, base, monkeypatch, tamper=False):
    """A small stand-in for wikitext-103-v1.zip on the local server, with its SHA-1s."""
    import zipfile

    from seqlm.data import corpora

    texts = {s: f" = {s} = \n the {s} text \n".encode() for s in ("train", "valid", "test")}
    with zipfile.ZipFile(root / "wt103.zip", "w") as z:
        for s, t in texts.items():
            z.writestr(
                f"wikitext-103/wiki.{s}.tokens", t + (b"x" if tamper and s == "valid" else b"")
            )
    archive = hashlib.sha1((root / "wt103.zip").read_bytes()).hexdigest()
    monkeypatch.setattr(corpora, "WIKITEXT103_URL", f"{base}/wt103.zip")
    monkeypatch.setattr(corpora, "WIKITEXT103_ARCHIVE", f"sha1:{archive}")
    files = {s: f"sha1:{hashlib.sha1(t).hexdigest()}" for s, t in texts.items()}
    monkeypatch.setattr(corpora, "WIKITEXT103_FILES", files)


def test_wikitext103_is_downloaded_as_one_zip_checked_and_unpacked_once(
    server, tmp_path, monkeypatch
):
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    root, base = server
    _wikitext103_zip(root, base, monkeypatch)
    data = preset("data", "wikitext103")
    data.prepare()
    assert data.vocab.decode(data.ids["valid"][:4]) == ["=", "<unk>", "=", "<eos>"]  # not in train
    folder = tmp_path / "cache" / "wikitext103"
    assert sorted(p.name for p in folder.iterdir()) == [
        "wiki.test.tokens",
        "wiki.train.tokens",
        "wiki.valid.tokens",
    ]  # the archive is gone once unpacked
    (root / "wt103.zip").unlink()  # the cache answers from now on
    assert next(preset("data", "wikitext103", use_cache=False).corpus.lines("test")) == [
        "=",
        "test",
        "=",
    ]


def test_a_wikitext103_archive_with_a_changed_member_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLM_DATA", str(tmp_path / "cache"))
    root, base = server
    _wikitext103_zip(root, base, monkeypatch, tamper=True)
    with pytest.raises(SeqlmError, match="wikitext-103/wiki.valid.tokens has sha1 .*, expected"):
        preset("data", "wikitext103").prepare()
    folder = tmp_path / "cache" / "wikitext103"
    assert not (folder / "wiki.valid.tokens").exists()
    assert not list(folder.glob(".*.part"))
