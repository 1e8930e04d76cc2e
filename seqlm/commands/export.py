"""``export ckpt=RUN_DIR format=onnx out=DIR``: a left-to-right network as ONNX files that
sherpa-onnx and other runtimes load without Python (icefall's rnn_lm contract:
``with-state.onnx``, ``no-state.onnx``; ``seqlm.export``). ``tokens=tokens.txt`` maps a
recogniser's token ids in the graph; ``quantize=int8`` adds onnxruntime's int8 files. Each
no-state file's test perplexity on the run's data goes to ``out/export.json`` beside the
checkpoint's own, each sentence read alone from a sentence start (as sherpa-onnx reads them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from seqlm.errors import SeqlmError

FORMATS = ("onnx",)
QUANTIZE = (None, "int8")


def run(cfg: DictConfig) -> dict[str, Any]:
    if cfg.format not in FORMATS:
        raise SeqlmError(f"format={cfg.format!r} is not one of {', '.join(FORMATS)}")
    if cfg.get("quantize") not in QUANTIZE:
        raise SeqlmError(f"quantize={cfg.quantize!r}: only int8 (or null)")
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise SeqlmError(f"out={str(out)!r} is a file, not a folder")
    tokens = Path(cfg.tokens).expanduser() if cfg.get("tokens") else None
    from seqlm.export import export_onnx, perplexities, write_facts
    from seqlm.scorers import load_scorer

    scorer = load_scorer(cfg.ckpt, device="cpu")
    if scorer.family != "network":
        raise SeqlmError(f"ckpt={cfg.ckpt}: export is for networks (an n-gram has its ARPA file)")
    facts = export_onnx(scorer, out, tokens, cfg.get("quantize"))
    if cfg.get("perplexity", True) and tokens is None:
        from seqlm.data.batching import line_ids
        from seqlm.scorers import on_data

        data, scorer = on_data(scorer, None)
        lines = line_ids(data.ids["test"], scorer.vocab.eos_id)
        files = {k: Path(v) for k, v in facts["files"].items()}
        facts["test_ppl"] = perplexities(files, lines)
        facts["test_ppl"]["checkpoint"] = sentence_ppl(scorer, lines)
    write_facts(out, facts)
    for kind, path in facts["files"].items():
        print(f"{kind}: {path} ({facts['bytes'][kind] / 2**20:.1f} MiB)")
    for kind, ppl in facts.get("test_ppl", {}).items():
        print(f"test ppl {kind}: {ppl:.4f}")
    if "tokens_unknown" in facts:
        print(
            f"{facts['tokens_unknown']} of {facts['tokens']} recogniser tokens are not in the "
            "LM's vocabulary (they read and score as <unk>)"
        )
    return facts


def sentence_ppl(scorer, lines: list[list[int]]) -> float:
    """The checkpoint's perplexity of ``lines`` each read alone from a sentence start (as the
    no-state file reads them; ``eval``'s carries the state from line to line)."""
    tokens = sum(len(ln) + 1 for ln in lines)
    return math.exp(-sum(scorer.sentence_logprobs(lines)) / tokens)
