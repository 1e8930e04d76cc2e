"""Rescoring a real recogniser's n-best lists: PTB test sentences spoken by ``flite`` and
recognised by ``pocketsphinx`` (its en-us acoustic model, dictionary and 3-gram), then rescored
with seqlm's language models; word error rates tuned on one half, tested on the other.

Set-up (not needed by the tests): ``apt-get install flite`` and ``pip install -e ".[speech]"``.

    python benchmarks/stt_rescoring.py --ptb ../shared/data/ptb --lm KN3_RUN --lm NET_RUN \\
        [--utterances 300] [--voice slt] [--nbest 50] [--work /tmp/stt] \\
        [--out docs/stt_rescoring.md]

Sentences: the PTB test lines of 5 to 25 words with no ``<unk>`` and no ``N`` (a recogniser
cannot say ``<unk>``, and ``N`` stands for numbers whose spoken form PTB lost); their clitics are
joined for speaking (``company 's`` -> ``company's``). Each is synthesised at 16 kHz and decoded
once; its n-best list is ``Decoder.nbest()`` (the first ``--nbest`` entries, duplicate word
strings merged keeping the best score), the score being the natural log of pocketsphinx's path
score (its ``Hypothesis.score`` is in the probability domain; pocketsphinx's own ``best()``
takes its log). Each LM set
is one ``seqlm rescore ... normalize=ptb dev=0.5`` run: the recogniser's spelling mapped to
PTB's, the first half of the utterances tunes the weights, the second half is the test. Each
``--lm`` (any run seqlm loads, a ``mix`` run included) is used alone, and the first two at
once with a weight each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import subprocess
import sys
import time
import wave
from datetime import date
from pathlib import Path

GOAL = 0.5  # the share of the first-pass-to-oracle gap the best rescoring should close


def sentences(ptb: Path, count: int) -> list[list[str]]:
    with gzip.open(ptb / "ptb.test.txt.gz", "rt") as f:
        lines = [ln.split() for ln in f]
    keep = [w for w in lines if 5 <= len(w) <= 25 and "<unk>" not in w and "N" not in w]
    return keep[:count]


def spoken(words: list[str]) -> str:
    """PTB's tokens as text to speak: clitics joined to their word."""
    return re.sub(r" ('s|'re|'ve|'ll|'d|'m|n't)\b", r"\1", " ".join(words))


def recognise(work: Path, utts: list[list[str]], voice: str, nbest: int) -> dict:
    """Speaks and decodes every sentence; writes nbest.tsv and refs.tsv; returns timings."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000)
    synth_s = decode_s = 0.0
    with (work / "nbest.tsv").open("w") as nb, (work / "refs.tsv").open("w") as rf:
        for i, words in enumerate(utts):
            wav = work / "wav" / f"u{i}.wav"
            wav.parent.mkdir(exist_ok=True)
            t = time.perf_counter()
            if not wav.exists():
                subprocess.run(["flite", "-voice", voice, "-t", spoken(words), "-o", str(wav)],
                               check=True)  # fmt: skip
            synth_s += time.perf_counter() - t
            with wave.open(str(wav)) as w:
                audio = w.readframes(w.getnframes())
            t = time.perf_counter()
            decoder.start_utt()
            decoder.process_raw(audio, full_utt=True)
            decoder.end_utt()
            best: dict[str, float] = {}
            for k, hyp in enumerate(decoder.nbest()):
                if k >= nbest:
                    break
                text = hyp.hypstr.strip()
                score = math.log(hyp.score) if hyp.score > 0 else float("-inf")
                best[text] = max(best.get(text, float("-inf")), score)
            if not best:  # no lattice: the one-best alone
                best[decoder.hyp().hypstr.strip() if decoder.hyp() else ""] = 0.0
            decode_s += time.perf_counter() - t
            rf.write(f"u{i}\t{' '.join(words)}\n")
            nb.writelines(f"u{i}\t{score!r}\t{text}\n" for text, score in best.items())
    return {"synth_s": synth_s, "decode_s": decode_s, "utterances": len(utts)}


def rescore(work: Path, lms: list[Path], name: str) -> dict:
    ckpt = f"ckpt=[{','.join(str(p) for p in lms)}]" if len(lms) > 1 else f"ckpt={lms[0]}"
    out = work / f"rescore-{name}"
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "seqlm", "rescore", ckpt, f"nbest={work / 'nbest.tsv'}",
         f"refs={work / 'refs.tsv'}", "normalize=ptb", "dev=0.5", "logger=none",
         f"hydra.run.dir={out}"],
        check=True, capture_output=True,
    )  # fmt: skip
    report = json.loads((out / "rescore.json").read_text())
    return {**report, "wall_s": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ptb", type=Path, default=Path("../shared/data/ptb"))
    ap.add_argument("--lm", type=Path, action="append", required=True)
    ap.add_argument("--utterances", type=int, default=300)
    ap.add_argument("--voice", default="slt")
    ap.add_argument("--nbest", type=int, default=50)
    ap.add_argument("--work", type=Path, default=Path("/tmp/stt"))
    ap.add_argument("--out", type=Path, default=Path("docs/stt_rescoring.md"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    utts = sentences(args.ptb, args.utterances)
    done = args.work / "recognition.json"  # the lists of an earlier run with the same options
    asked = {"utterances": len(utts), "voice": args.voice, "nbest": args.nbest}
    if done.exists() and json.loads(done.read_text())["asked"] == asked:
        timing = json.loads(done.read_text())["timing"]
    else:
        timing = recognise(args.work, utts, args.voice, args.nbest)
        done.write_text(json.dumps({"asked": asked, "timing": timing}))
    sets = {p.name: [p] for p in args.lm}  # each alone, and the first two at once
    if len(args.lm) > 1:
        sets[f"{args.lm[0].name} and {args.lm[1].name}, a weight each"] = args.lm[:2]
    results = {
        name: rescore(args.work, lms, f"set{i}") for i, (name, lms) in enumerate(sets.items())
    }
    first = next(iter(results.values()))
    gap = first["test/wer_first_pass"] - first["test/wer_oracle"]
    n = timing["utterances"]
    lines = [
        f"Measured {date.today()} on this machine; {n} PTB test sentences (5-25 words, no "
        f"`<unk>`, no `N`), flite voice `{args.voice}`, pocketsphinx's en-us models, "
        f"{args.nbest}-best; tuned on the first {first['dev/utterances']} utterances, tested on "
        f"the other {first['test/utterances']} ({first['test/ref_words']} words).",
        "",
        "| LM | test WER | share of the gap closed | weights (lm; words; oov) | rescoring time |",
        "| --- | ---: | ---: | --- | ---: |",
        f"| first pass (pocketsphinx alone) | {100 * first['test/wer_first_pass']:.2f}% | 0% | | |",
        f"| oracle ({args.nbest}-best) | {100 * first['test/wer_oracle']:.2f}% | 100% | | |",
    ]
    best_share = 0.0
    for name, r in results.items():
        share = (first["test/wer_first_pass"] - r["test/wer"]) / gap if gap > 0 else 0.0
        best_share = max(best_share, share)
        lm = r["weights/lm"]
        lm = ", ".join(f"{w:.3g}" for w in lm) if isinstance(lm, list) else f"{lm:.3g}"
        weights = f"{lm}; {r['weights/words']:.3g}; {r['weights/oov']:.3g}"
        wer, wall = 100 * r["test/wer"], r["wall_s"]
        lines.append(f"| {name} | {wer:.2f}% | {100 * share:.0f}% | {weights} | {wall:.1f} s |")
    met = "met" if best_share >= GOAL else "not met"
    lines += [
        "",
        f"Goal: the best rescoring closes at least {GOAL:.0%} of the gap between the first pass "
        f"and the oracle: {best_share:.0%}, {met}. Recognition took "
        f"{timing['decode_s'] / n:.2f} s per utterance (decoding and its n-best, one core), "
        f"synthesis {timing['synth_s'] / n:.2f} s; each rescoring time is a whole "
        "`seqlm rescore` process (start-up, loading the LMs and writing the outputs included).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
