"""How fast ``ngram`` answers a decoder, beside KenLM's Python module on the same ARPA files.

    python benchmarks/ngram_lookups.py [--kenlm-ptb ../shared/data/kenlm-ptb]
        [--ptb ../shared/data/ptb] [--out docs/ngram_lookups.md]

For lmplz's PTB models of order 3 and 5 (``ptb.o3.arpa.gz``, ``ptb.o5.arpa.gz``):
- loading the ARPA file: ``read_arpa`` against ``kenlm.Model`` (each the median of 3 loads in
  this process);
- loading the saved ``.npz``: ``NgramLM.load`` (median of 5), and a whole ``python -c`` process
  that imports ``ngram`` and loads it;
- scoring the test set: ``score_ids`` of the whole stream, against ``kenlm.Model.score`` of
  each sentence in a Python loop;
- single-word lookups in batches of 64 states (``extend``: the word's log-probability and the
  next states, from one set of lookups), against KenLM's stateful ``BaseScore`` called once a
  word from Python (what a Python decoder does);
- the V-wide distribution of 64 states (``distributions``), which KenLM does not offer
  (a decoder would call ``BaseScore`` V times a state);
- one word after one state, one call a word, as pyctcdecode and flashlight-text ask:
  ``NgramLM.score_one`` (pure Python over the tables' memory) with the tables memory-mapped
  and in memory, ``NgramLM.extend`` of one state (a numpy call) both ways, and the step API's
  ``step_one`` (what seqlm's adapters call), against KenLM's ``BaseScore``.

The states are those after every prefix of the test sentences, 64 a batch; the calls are timed
alone, after a warm-up, as the median of several rounds.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from decoding_speed import median_time  # a warm-up call, then the median of rounds

from ngram import NgramLM, read_arpa

BATCH = 64


def test_sentences(ptb: Path) -> list[list[str]]:
    with gzip.open(ptb / "ptb.test.txt.gz", "rt") as f:
        return [["<ptb-unk>" if w == "<unk>" else w for w in ln.split()] for ln in f]


def batches(m: NgramLM, sentences: list[list[str]], limit: int = 40):
    """(states, next words) in batches of 64: every prefix of the test sentences."""
    states, words = [], []
    for sent in sentences:
        ids = [m.stoi.get(w, m.unk_id) for w in sent] + [m.eos_id]
        state = m.begin(1)
        for w in ids:
            states.append(state)
            words.append(w)
            state = m.advance(state, [w])
        if len(states) >= BATCH * limit:
            break
    out = []
    for a in range(0, BATCH * limit, BATCH):
        out.append((states[0].concat(states[a : a + BATCH]), np.asarray(words[a : a + BATCH])))
    return out


def kenlm_figures(kenlm, path: Path, sentences) -> dict:
    load = median_time(lambda: kenlm.Model(str(path)), 3)
    km = kenlm.Model(str(path))
    text = [" ".join(s) for s in sentences]
    tokens = sum(len(s) + 1 for s in sentences)
    score = median_time(lambda: [km.score(t) for t in text], 3)
    words = [w for s in sentences[:200] for w in [*s, "</s>"]]

    def lookups():
        state, out = kenlm.State(), kenlm.State()
        km.BeginSentenceWrite(state)
        for w in words:
            km.BaseScore(state, w, out)
            state, out = out, state

    per = median_time(lookups, 5) / len(words)
    return {
        "load_s": load,
        "score_tokens_per_s": tokens / score,
        "lookups_per_s": 1 / per,
        "one_us": per * 1e6,
    }


def single_calls(npz: Path, sentences) -> dict:
    """Microseconds per call of one word after one state, the calls alone (the words of the
    first 200 test sentences, each state the one the previous call returned)."""
    out = {}
    for mmap in (True, False):
        m = NgramLM.load(npz, mmap=mmap)
        ids = [m.stoi.get(w, m.unk_id) for s in sentences[:200] for w in [*s, "</s>"]]

        def pure(m=m, ids=ids):
            ctx, avail = m.begin_one()
            for w in ids:
                _, ctx, avail = m.score_one(ctx, avail, w)

        def numpy_one(m=m, ids=ids[:2000]):
            state = m.begin(1)
            for w in ids:
                _, state = m.extend(state, [w])

        key = "mmap" if mmap else "memory"
        out[f"score_one_{key}_us"] = median_time(pure, 5) / len(ids) * 1e6
        out[f"extend_one_{key}_us"] = median_time(numpy_one, 3) / 2000 * 1e6
    import seqlm  # the step API, as the adapters call it

    lm = seqlm.load(npz)
    ids = [lm.vocab.stoi.get(w, 0) for s in sentences[:200] for w in [*s, "</s>"]]

    def stepped():
        state = lm.start_one()
        for i in ids:
            _, state = lm.step_one(state, i)

    out["step_one_us"] = median_time(stepped, 5) / len(ids) * 1e6
    return out


def ours_figures(path: Path, npz: Path, sentences) -> dict:
    load = median_time(lambda: read_arpa(path), 3)
    m = read_arpa(path)
    m.save(npz)
    npz_load = median_time(lambda: NgramLM.load(npz), 5)
    t = time.perf_counter()
    code = f"from ngram import NgramLM; NgramLM.load({str(npz)!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    npz_process = time.perf_counter() - t
    ids = np.asarray([m.stoi.get(w, m.unk_id) for s in sentences for w in [*s, "</s>"]])
    score = median_time(lambda: m.score_ids(ids), 3)
    work = batches(m, sentences)
    per_batch = median_time(lambda: [m.extend(s, w) for s, w in work], 5) / len(work)
    wide = median_time(lambda: [m.distributions(s) for s, _ in work[:10]], 3) / 10
    return {
        "load_s": load,
        "npz_load_s": npz_load,
        "npz_process_s": npz_process,
        "score_tokens_per_s": len(ids) / score,
        "lookups_per_s": BATCH / per_batch,
        "batch_ms": per_batch * 1e3,
        "wide_ms": wide * 1e3,
        **single_calls(npz, sentences),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kenlm-ptb", type=Path, default=Path("../shared/data/kenlm-ptb"))
    ap.add_argument("--ptb", type=Path, default=Path("../shared/data/ptb"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/ngram-lookups"))
    ap.add_argument("--out", type=Path, default=Path("docs/ngram_lookups.md"))
    args = ap.parse_args()
    import kenlm

    args.work.mkdir(parents=True, exist_ok=True)
    sentences = test_sentences(args.ptb)
    rows = []
    for order in (3, 5):
        arpa = args.kenlm_ptb / f"ptb.o{order}.arpa.gz"
        ours = ours_figures(arpa, args.work / f"o{order}.npz", sentences)
        ken = kenlm_figures(kenlm, arpa, sentences)
        rows.append((order, ours, ken))
        print(order, ours, ken, flush=True)
    cpu = platform.processor() or platform.machine()
    lines = [
        "# N-gram lookups: `ngram` beside KenLM's Python module",
        "",
        f"`python benchmarks/ngram_lookups.py` on {date.today()}, {cpu}, "
        f"{subprocess.os.cpu_count()} cores, Python {platform.python_version()}, one process. "
        "The models are lmplz's PTB ARPA files (`../shared/data/kenlm-ptb`), read by both. "
        "What each figure times is in the benchmark's docstring.",
        "",
        "| operation | order | `ngram` | KenLM (`kenlm` module) | goal | met? |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for order, ours, ken in rows:
        load_ok = ours["load_s"] <= 2 * ken["load_s"]
        lines += [
            f"| load the ARPA file | {order} | {ours['load_s']:.2f} s | {ken['load_s']:.2f} s "
            f"| within 2x KenLM | {'yes' if load_ok else 'no'} "
            f"({ours['load_s'] / ken['load_s']:.1f}x) |",
            f"| `NgramLM.load` of the `.npz` (the call; whole process) | {order} | "
            f"{ours['npz_load_s']:.3f} s; {ours['npz_process_s']:.2f} s | | <= 0.2 s (kn3) | "
            f"{'yes' if ours['npz_load_s'] <= 0.2 else 'no'} |",
            f"| score the test set (82,430 tokens) | {order} | "
            f"{ours['score_tokens_per_s'] / 1e6:.2f}M tokens/s | "
            f"{ken['score_tokens_per_s'] / 1e6:.2f}M tokens/s | | |",
            f"| one word after a state (batches of 64; KenLM one call a word) | {order} | "
            f"{ours['lookups_per_s'] / 1e3:.0f}k/s ({ours['batch_ms']:.2f} ms a batch) | "
            f"{ken['lookups_per_s'] / 1e3:.0f}k/s | >= 100k/s | "
            f"{'yes' if ours['lookups_per_s'] >= 1e5 else 'no'} |",
            f"| V-wide distribution of 64 states (V = 10,001) | {order} | "
            f"{ours['wide_ms']:.1f} ms | (none) | <= 5 ms | "
            f"{'yes' if ours['wide_ms'] <= 5 else 'no'} |",
            f"| one word after one state, one call (`score_one`; tables mapped / in memory) "
            f"| {order} | {ours['score_one_mmap_us']:.2f} / {ours['score_one_memory_us']:.2f} us "
            f"| {ken['one_us']:.2f} us | <= 5 us (kn5) | "
            f"{'yes' if ours['score_one_mmap_us'] <= 5 else 'no'} |",
            f"| the same through the step API (`step_one`, what the adapters call) | {order} | "
            f"{ours['step_one_us']:.2f} us | | | |",
            f"| the same as a numpy call (`extend` of one state; mapped / in memory) | {order} "
            f"| {ours['extend_one_mmap_us']:.1f} / {ours['extend_one_memory_us']:.1f} us | | | |",
        ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
