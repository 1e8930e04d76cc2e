"""``ngram``: fit, score and convert n-gram models from the shell, as lmplz, query and
build_binary do (their flag names where they mean the same). Imports numpy and nothing heavier.

    ngram fit -o 5 --text train.txt --arpa lm.arpa [--npz lm.npz] [--prune 0 1 1]
              [--prune-entropy 1e-8] [--smoothing modified_kn] [-S 2G] [-T /tmp]
              [--discount_fallback [D1 D2 D3]] [--dask local:4 | tcp://host:8786]
    ngram score lm.arpa [--tokens] < sentences.txt
    ngram ppl lm.arpa test.txt
    ngram convert lm.arpa lm.npz          # and back

Text is read from a file or standard input (``-``), gzip or not: one sentence a line, words
separated by white space. Every mistake is one line on standard error and exit status 2.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ngram.errors import NgramError
from ngram.keys import BOS, EOS, UNK

LOG10 = math.log(10)
FALLBACK = (0.5, 1.0, 1.5)  # lmplz's --discount_fallback without values


def fail(message: str) -> None:
    print(f"ngram: error: {message}", file=sys.stderr)
    sys.exit(2)


# -- text in ---------------------------------------------------------------------------------
def lines_of(source: str) -> Iterator[str]:
    """The lines of ``source`` (a path, ``.gz`` or not, or ``-`` for standard input), without
    their line ends. A file that cannot be read is one error naming it."""
    if source == "-":
        stream = sys.stdin.buffer
        yield from _decoded(stream, "standard input")
        return
    path = Path(source)
    if not path.is_file():
        raise NgramError(f"{source}: no such file")
    try:
        with path.open("rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        with (gzip.open if gz else open)(path, "rb") as f:
            yield from _decoded(f, source)
    except (OSError, EOFError) as e:
        raise NgramError(f"{source}: cannot read it ({e})") from None


def _decoded(stream, name: str) -> Iterator[str]:
    for number, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NgramError(f"{name}: line {number} is not UTF-8 ({e.reason})") from None


def encode_training(source: str) -> tuple[np.ndarray, list[str]]:
    """The text as one id stream (each line ends with ``</s>``'s id) and its vocabulary:
    ``<unk>`` 0, ``</s>`` 1, then words in order of first appearance (a ``<unk>`` in the text,
    as PTB writes it, is that id)."""
    itos, stoi, ids = [UNK, EOS], {UNK: 0, EOS: 1}, array("i")
    for number, line in enumerate(lines_of(source), 1):
        for w in line.split():
            i = stoi.get(w)
            if i is None:
                if w in (BOS, EOS):
                    raise NgramError(
                        f"{source}: line {number} holds {w}, which marks sentence bounds and "
                        "cannot be a word"
                    )
                i = stoi[w] = len(itos)
                itos.append(w)
            ids.append(i)
        ids.append(1)
    if len(ids) == 0:
        raise NgramError(f"{'standard input' if source == '-' else source}: no text")
    return np.frombuffer(ids, dtype=np.int32), itos


def encode_with(model, source: str, words: list | None = None):
    """``source`` in ``model``'s ids (unknown words as ``<unk>``): the stream (lines end with
    ``</s>``), which tokens were out of the vocabulary, and where each line ends. ``words``: a
    list that gets each token as written (for ``score --tokens``)."""
    stoi, unk, eos = model.stoi, model.unk_id, model.eos_id
    ids, oov, ends = array("i"), array("b"), []
    for line in lines_of(source):
        split = line.split()
        for w in split:
            i = stoi.get(w)
            ids.append(unk if i is None else i)
            oov.append(i is None or i == unk)
        ids.append(eos)
        oov.append(False)
        ends.append(len(ids))
        if words is not None:
            words.extend(split)
            words.append(EOS)
    return np.frombuffer(ids, dtype=np.int32), np.frombuffer(oov, dtype=bool), ends


# -- models ----------------------------------------------------------------------------------
def load(path: str):
    """An ARPA file (``.gz`` too) or a ``.npz`` that ``convert`` or ``--npz`` wrote."""
    from ngram.arpa import read_arpa
    from ngram.model import NgramLM

    if path.endswith(".npz"):
        if not Path(path).is_file():
            raise NgramError(f"{path}: no such file")
        return NgramLM.load(path)
    return read_arpa(path)


def save(model, path: str) -> None:
    from ngram.arpa import write_arpa

    if path.endswith(".npz"):
        model.save(path)
    else:
        write_arpa(model, path)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- sub-commands ----------------------------------------------------------------------------
def cmd_fit(args) -> None:
    from ngram.counting import parse_size
    from ngram.model import NgramLM

    if args.arpa is None and args.npz is None:
        raise NgramError("fit writes nothing: give --arpa FILE and/or --npz FILE")
    if args.order < 1:
        raise NgramError(f"-o {args.order}: the order must be >= 1")
    if args.dask is not None:
        from ngram.distributed import check_address

        check_address(args.dask)
    for out in (args.arpa, args.npz):
        if out is not None and not Path(out).expanduser().resolve().parent.is_dir():
            raise NgramError(f"{out}: its folder does not exist")
    if args.npz is not None and not args.npz.endswith(".npz"):
        raise NgramError(f"--npz {args.npz}: the file name must end in .npz")
    memory = None if args.memory is None else _memory(args.memory, parse_size)
    if args.temp is not None:
        if not Path(args.temp).is_dir():
            raise NgramError(f"-T {args.temp}: no such folder")
        os.environ["TMPDIR"] = args.temp  # where counting spills its sorted runs
    params = {}
    if args.discount_fallback is not None:
        params["discount_fallback"] = args.discount_fallback or FALLBACK
    started = time.perf_counter()
    ids, itos = encode_training(args.text)
    _say(f"read {len(ids):,} tokens, {len(itos):,} types from {args.text}")
    fit = dict(
        order=args.order,
        smoothing=args.smoothing,
        max_memory=memory,
        prune=args.prune,
        prune_entropy=args.prune_entropy,
        dask=args.dask,
        **params,
    )
    model = NgramLM.fit_ids(ids, itos, **fit)
    tokens = len(ids)
    del ids  # not held while the files are written
    if "dask" in model.info:
        d = model.info["dask"]
        _say(
            f"counted on {d['workers']} Dask workers, {d['shards']} shards: "
            f"{(d['map_bytes'] + d['table_bytes']) / 2**20:.0f} MiB sent "
            f"({d['map_bytes'] / tokens:.1f} + {d['table_bytes'] / tokens:.1f} bytes a "
            f"token, map + index), worker peaks {d['worker_peak_mb']} MiB"
        )
    sizes = " ".join(f"{k + 1}:{len(t):,}" for k, t in enumerate(model.keys))
    _say(f"estimated n-grams {sizes} in {time.perf_counter() - started:.1f} s")
    for out in (args.arpa, args.npz):
        if out is not None:
            save(model, out)
            _say(f"wrote {out}")


def _memory(value: str, parse_size) -> int:
    """``-S``: bytes, ``500M``, ``2G``, or a share of the machine's memory (``80%``), as
    lmplz reads it."""
    if value.endswith("%"):
        try:
            share = float(value[:-1]) / 100
        except ValueError:
            raise NgramError(f"-S {value}: not a size (give e.g. 2G or 50%)") from None
        if not 0 < share <= 1:
            raise NgramError(f"-S {value}: a share of memory is between 0% and 100%")
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return parse_size(int(ram * share), "-S")
    return parse_size(value, "-S")


def _scores(model, source: str, words: list | None = None):
    if not model.normalized:
        raise NgramError("stupid backoff gives scores, not probabilities: nothing to score")
    ids, oov, ends = encode_with(model, source, words)
    return ids, oov, ends, model.score_ids(ids) / LOG10


def cmd_score(args) -> None:
    """One line a sentence, as KenLM's query prints it: with ``--tokens`` each token as
    ``word=id n log10`` (``n``: the length of the n-gram its probability came from; an
    unknown word's id is ``<unk>``'s), then ``Total: log10 OOV: count``."""
    model = load(args.model)
    words = [] if args.tokens else None
    ids, oov, ends, log10 = _scores(model, args.text, words)
    if args.tokens:
        lengths = model.ngram_lengths(ids).tolist()
        tokens = [
            f"{w}={i} {n} {lp:.6g}\t"
            for w, i, n, lp in zip(words, ids.tolist(), lengths, log10.tolist())
        ]
    out, start = [], 0
    for end in ends:
        total = float(log10[start:end].sum())
        head = "".join(tokens[start:end]) if args.tokens else ""
        out.append(f"{head}Total: {total:.6g} OOV: {int(oov[start:end].sum())}")
        start = end
        if len(out) >= 4096:
            print("\n".join(out))
            out = []
    if out:
        print("\n".join(out))
    _summary(log10, oov)


def cmd_ppl(args) -> None:
    model = load(args.model)
    _, oov, _, log10 = _scores(model, args.text)
    _summary(log10, oov)


def _summary(log10: np.ndarray, oov: np.ndarray) -> None:
    """Perplexity with and without the out-of-vocabulary tokens (scored as ``<unk>``; seqlm's
    definition is the first), as KenLM's query prints them."""
    n, n_oov = len(log10), int(oov.sum())
    inside = log10[~oov]
    print(f"Perplexity including OOVs:\t{10 ** (-log10.sum() / max(n, 1)):.10g}")
    print(f"Perplexity excluding OOVs:\t{10 ** (-inside.sum() / max(len(inside), 1)):.10g}")
    print(f"OOVs:\t{n_oov}")
    print(f"Tokens:\t{n}")


def cmd_convert(args) -> None:
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise NgramError(f"{args.output}: the output would overwrite the input")
    save(load(args.input), args.output)
    _say(f"wrote {args.output}")


# -- the parser ------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        fail(f"{self.prog.removeprefix('ngram ').strip() or 'ngram'}: {message}")


def _threshold(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count threshold") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _fallback(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a discount") from None


def parser() -> argparse.ArgumentParser:
    from ngram.smoothing import METHODS

    top = _Parser(prog="ngram", description="Smoothed n-gram language models (numpy only).")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    fit = sub.add_parser("fit", help="count a text and write the model (lmplz)")
    fit.add_argument("-o", "--order", type=int, required=True, help="the model's order")
    fit.add_argument("--text", default="-", help="training text (default: standard input)")
    fit.add_argument("--arpa", help="write the model as ARPA (.gz: compressed)")
    fit.add_argument("--npz", help="write the model's tables (loads in milliseconds)")
    fit.add_argument("--smoothing", default="modified_kn", choices=METHODS)
    fit.add_argument(
        "--prune", nargs="+", type=_threshold, metavar="N", help="count thresholds per order"
    )
    fit.add_argument("--prune-entropy", type=float, metavar="X", help="Stolcke's threshold")
    fit.add_argument("-S", "--memory", help="counting memory: bytes, 2G, 80%% (lmplz's -S)")
    fit.add_argument("-T", "--temp", help="folder for spilled counts (lmplz's -T)")
    fit.add_argument(
        "--discount_fallback",
        nargs="*",
        type=_fallback,
        metavar="D",
        help="discounts where the counts give none (default 0.5 1 1.5)",
    )
    fit.add_argument("--dask", metavar="ADDRESS", help="count on Dask: local:N or tcp://host:port")
    fit.set_defaults(run=cmd_fit)

    score = sub.add_parser("score", help="score sentences, one per line (KenLM's query)")
    score.add_argument("model", help="ARPA file or .npz")
    score.add_argument("text", nargs="?", default="-", help="default: standard input")
    score.add_argument("--tokens", action="store_true", help="each token's score too")
    score.set_defaults(run=cmd_score)

    ppl = sub.add_parser("ppl", help="perplexity of a text")
    ppl.add_argument("model", help="ARPA file or .npz")
    ppl.add_argument("text", help="one sentence a line ('-': standard input)")
    ppl.set_defaults(run=cmd_ppl)

    convert = sub.add_parser("convert", help="ARPA <-> .npz (the suffix says which)")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.set_defaults(run=cmd_convert)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except NgramError as e:
        fail(str(e))
    except BrokenPipeError:  # `ngram score lm.arpa < text | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        fail("interrupted; no file was written")
