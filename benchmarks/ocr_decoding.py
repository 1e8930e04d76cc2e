"""OCR with a real recogniser: PaddleOCR's PP-OCRv4 text-line model (the ``rapidocr-onnxruntime``
wheel's ``ch_PP-OCRv4_rec_infer.onnx``, run with onnxruntime) reads rendered, degraded lines;
``seqlm decode`` decodes its CTC posteriors greedily, by beam search alone, and fused with
character LMs (docs/results.md, "OCR: CTC decoding with a language model").

Two steps, two Python environments (the OCR packages need numpy 2; seqlm's dev environment runs
numpy 1.x for pyctcdecode):

    OCR=/tmp/ocr-venv/bin/python   # python -m venv; pip install rapidocr-onnxruntime==1.4.4
                                   # onnxruntime pillow; apt install fonts-wqy-zenhei
    python benchmarks/ocr_decoding.py --ocr-python $OCR --lm kn5=RUN lstm=RUN both=MIX_RUN \\
        --out /tmp/ocr

Text ``--text hongloumeng`` (character LMs, ``unit=char``): sentences of 《红楼梦》's validation
chapters (109-114, which the LMs never trained on), 8-24 characters, cut at 。！？；; each drawn
as a line in WenQuanYi Zen Hei and degraded at three fixed levels (downscaled and scaled back,
blurred, Gaussian noise; seeded), ``--lines`` per level. Each level is decoded apart: the
weights tuned on its first half of lines, tested on the other half. ``--text ptb`` (word LMs,
``unit=word``): PTB test sentences of 4-12 words without ``<unk>`` or ``N``, drawn the same
way. Every number comes from whole ``seqlm decode`` processes, timed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
LEVELS = {  # name: (scale the line is drawn down to and back, blur radius, noise sigma)
    "mild": (0.27, 1.1, 24.0),
    "medium": (0.25, 1.25, 29.0),
    "hard": (0.23, 1.35, 33.0),
}
MODEL = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"


# -- step 1 (seqlm's environment): the sentences ---------------------------------------------
def ptb_sentences(root: str, count: int, seed: int = 0) -> list[str]:
    """``count`` PTB test sentences of 4-12 words without ``<unk>`` or ``N`` (a printed line
    has neither), as PTB spells them, drawn with a fixed seed."""
    import gzip
    import random

    with gzip.open(Path(root) / "ptb.test.txt.gz", "rt") as f:
        pool = [" ".join(ln.split()) for ln in f]
    pool = [s for s in pool if 4 <= len(s.split()) <= 12 and "<unk>" not in s]
    pool = [s for s in pool if "N" not in s.split()]
    random.Random(seed).shuffle(pool)
    return pool[:count]


def sentences(root: str, count: int, seed: int = 0) -> list[str]:
    """``count`` sentences of chapters 109-114, 8-24 characters, drawn with a fixed seed."""
    import random

    from seqlm.data.corpora import Hongloumeng

    chapters = Hongloumeng(root).by_chapter()[108:114]
    pool = []
    for chapter in chapters:
        for paragraph in chapter[1:]:  # the heading apart
            # a closing quote after 。 ends the sentence it closes, not the next one
            for s in re.findall(r"[^。！？；]+[。！？；]?[”’」』]*", paragraph):
                s = s.strip()
                if 8 <= len(s) <= 24:
                    pool.append(s)
    random.Random(seed).shuffle(pool)
    return pool[:count]


# -- step 2 (the OCR environment): render, degrade, recognise --------------------------------
def render(text: str, level: str, seed: int):
    """The line drawn at 40 px, then degraded; an RGB uint8 array."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(FONT, 40)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 24, 56), 255)
    ImageDraw.Draw(img).text((12 - left, (56 - (bottom - top)) // 2 - top), text, font=font, fill=0)
    scale, blur, noise = LEVELS[level]
    w, h = img.size
    small = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.BILINEAR)
    img = small.resize((w, h), Image.BILINEAR).filter(ImageFilter.GaussianBlur(blur))
    rng = np.random.default_rng(seed)
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, noise, (h, w))
    gray = np.clip(pixels, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def recognise(session, image):
    """PP-OCRv4's recogniser on one line: resized to height 48 (its aspect kept), scaled to
    [-1, 1]; the (T, 6625) softmax as natural logs (float32)."""
    import numpy as np
    from PIL import Image

    h, w = image.shape[:2]
    width = max(8, int(round(48 * w / h)))
    resized = np.asarray(Image.fromarray(image).resize((width, 48), Image.BILINEAR), np.float32)
    x = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
    probs = session.run(None, {session.get_inputs()[0].name: x})[0][0]
    return np.log(np.maximum(probs, 1e-30)).astype(np.float32)


def ocr_step(work: Path) -> None:
    """Reads ``work/sentences.json``, writes ``work/LEVEL/{posteriors.npz,refs.tsv}``,
    ``work/tokens.txt`` and ``work/ocr.json`` (the recogniser's time per line)."""
    import importlib.util

    import numpy as np
    import onnxruntime as ort

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    model = Path(spec.origin).parent / "models" / Path(MODEL).name
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    chars = session.get_modelmeta().custom_metadata_map["character"].split("\n")
    chars = [c for c in chars if c != ""] if chars[-1] == "" else chars
    tokens = ["<blank>", *chars, " "]  # PP-OCR: 0 the blank, then the dictionary, then a space
    (work / "tokens.txt").write_bytes(("\n".join(tokens) + "\n").encode("utf-8"))
    lines = json.loads((work / "sentences.json").read_text())
    timing = {}
    for level in LEVELS:
        out = work / level
        out.mkdir(parents=True, exist_ok=True)
        arrays, started = {}, time.perf_counter()
        for i, text in enumerate(lines):
            arrays[f"l{i:04d}"] = recognise(session, render(text, level, seed=i))
        timing[level] = 1000 * (time.perf_counter() - started) / len(lines)
        np.savez(out / "posteriors.npz", **arrays)
        refs = "".join(f"l{i:04d}\t{t}\n" for i, t in enumerate(lines))
        (out / "refs.tsv").write_text(refs, encoding="utf-8")
    (work / "ocr.json").write_text(json.dumps({"ms_per_line": timing}, indent=1))


# -- step 3 (seqlm's environment): decode ----------------------------------------------------
def decode(
    work: Path, level: str, name: str, ckpt: str | None, beam: int, unit: str, extra: list[str]
) -> dict:
    run = work / level / f"run_{name}"
    args = [
        f"posteriors={work / level / 'posteriors.npz'}",
        f"tokens={work / 'tokens.txt'}",
        f"refs={work / level / 'refs.tsv'}",
        "dev=0.5",
        f"unit={unit}",
        f"beam={beam}",
        "logger=csv",
        f"hydra.run.dir={run}",
        f"ckpt={ckpt}" if ckpt else "ckpt=null",
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "seqlm", "decode", *args], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    record = json.loads((run / "decode.json").read_text())
    return {**record, "wall_s": wall}


def report(results: dict, ocr: dict, lms: list[str]) -> str:
    """The markdown table of a run: per level, greedy and each decoding's test CER and WER,
    the CER cut relative to greedy, the weights tuned on dev, the time per line."""
    rows = [
        "| level | decoding | test CER | CER cut | test WER | weights (lm, units) | ms/line | "
        "LM share |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for level in LEVELS:
        first = results[f"{level}/beam"]
        greedy = first["test/cer_greedy"]
        rows.append(
            f"| {level} | greedy (PP-OCRv4 alone) | {100 * greedy:.2f}% | | "
            f"{100 * first['test/wer_greedy']:.2f}% | | {ocr['ms_per_line'][level]:.0f} (OCR) | |"
        )
        for name in ["beam", *lms]:
            r = results[f"{level}/{name}"]
            cut = 1 - r["test/cer"] / greedy if greedy else 0.0
            label = "beam, no LM" if name == "beam" else f"beam + {name}"
            rows.append(
                f"| {level} | {label} | {100 * r['test/cer']:.2f}% | {100 * cut:.0f}% | "
                f"{100 * r['test/wer']:.2f}% | {r['weights/lm']:g}, {r['weights/units']:g} | "
                f"{r['time/ms_per_utterance']:.0f} | {100 * r.get('time/lm_share', 0):.0f}% |"
            )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ocr-python", required=False, help="python of the OCR environment")
    ap.add_argument("--ocr-step", type=Path, help=argparse.SUPPRESS)  # run inside that python
    ap.add_argument("--lm", nargs="*", default=[], help="NAME=RUN_DIR, decoded in this order")
    ap.add_argument("--text", choices=("hongloumeng", "ptb"), default="hongloumeng")
    ap.add_argument("--root", default=None, help="the corpus folder (../shared/data/TEXT)")
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--beam", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("/tmp/seqlm-ocr"))
    ap.add_argument("--report", action="store_true", help="only print the table of --out")
    ap.add_argument("--set", nargs="*", default=[], help="more decode overrides (weights.oov=-10)")
    a = ap.parse_args()
    if a.report:
        done = json.loads((a.out / "results.json").read_text())
        names = [x.split("=", 1)[0] for x in a.lm]
        print(report(done["runs"], done["ocr"], names))
        return
    if a.ocr_step:
        ocr_step(a.ocr_step)
        return
    a.out.mkdir(parents=True, exist_ok=True)
    root = a.root or f"../shared/data/{a.text}"
    unit = "char" if a.text == "hongloumeng" else "word"
    if not (a.out / "ocr.json").exists():
        lines = (sentences if a.text == "hongloumeng" else ptb_sentences)(root, a.lines)
        (a.out / "sentences.json").write_text(json.dumps(lines, ensure_ascii=False))
        subprocess.run([a.ocr_python, __file__, "--ocr-step", str(a.out)], check=True)
    lms = [("beam", None), *(tuple(x.split("=", 1)) for x in a.lm)]
    results = {}
    for level in LEVELS:
        for name, ckpt in lms:
            r = decode(a.out, level, name, ckpt, a.beam, unit, a.set)
            results[f"{level}/{name}"] = r
            print(
                f"{level:<7} {name:<6} greedy CER {100 * r['test/cer_greedy']:5.2f}%  "
                f"fused {100 * r['test/cer']:5.2f}%  greedy WER {100 * r['test/wer_greedy']:5.2f}%"
                f"  fused {100 * r['test/wer']:5.2f}%  weights {r['weights/lm']}, "
                f"{r['weights/units']}  {r['time/ms_per_utterance']:.1f} ms/line "
                f"(LM calls {r['decode/lm_calls']}, wall {r['wall_s']:.1f} s)",
                flush=True,
            )
    ocr = json.loads((a.out / "ocr.json").read_text())
    (a.out / "results.json").write_text(json.dumps({"ocr": ocr, "runs": results}, indent=1))
    print(report(results, ocr, [name for name, _ in lms[1:]]))


if __name__ == "__main__":
    main()
