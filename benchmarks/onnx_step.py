"""One decoder step of a 2x650 LSTM (PTB's 10k vocabulary; ``--cell``: another cell):
onnxruntime on the exported with-state file (float32 and int8) against the torch step API,
batch 1 and 16, one thread each; the files' sizes; and the exported log-probabilities against
the step API over PTB test, token by token, states carried over each whole sentence.

    python benchmarks/onnx_step.py [--ptb ../shared/data/ptb] [--steps 2000] [--lines 400]
        [--cell lstm|gru|rnn|mogrifier|mingru|minlstm]
    python benchmarks/onnx_step.py --ckpt RUN_DIR --export DIR   # a trained run and its export

The weights are random (the sizes are what matters for speed; the equality holds for any
weights). Needs ``seqlm[export]``.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seqlm.data.batching import line_ids
from seqlm.data.vocab import Vocab
from seqlm.export import export_onnx, session, write_facts
from seqlm.scorers import load_scorer

HERE = Path(__file__).resolve().parent


class Scorer:
    """What ``export_onnx`` reads of a loaded run: the network and its vocabulary."""

    family = "network"
    config: dict = {}  # no run: no data or tokenizer to keep

    def __init__(self, net, vocab):
        self.net, self.vocab = net, vocab


def timed(fn, steps: int) -> float:
    """Median microseconds of ``fn()`` over ``steps`` calls, in 5 rounds."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(steps // 5):
            fn()
        rounds.append((time.perf_counter() - start) / (steps // 5) * 1e6)
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptb", type=Path, default=HERE.parent.parent / "shared" / "data" / "ptb")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lines", type=int, default=400, help="PTB test sentences compared")
    ap.add_argument("--cell", default="lstm", help="the cell of the 2x650 network")
    ap.add_argument("--ckpt", type=Path, help="a trained run: compare its export over its test")
    ap.add_argument("--export", type=Path, help="the folder `seqlm export` wrote for --ckpt")
    args = ap.parse_args()
    if args.ckpt:
        return compare_trained(args.ckpt, args.export)
    torch.set_num_threads(1)
    from omegaconf import OmegaConf

    from seqlm.conf import CONF_DIR
    from seqlm.models import RecurrentLM

    with gzip.open(args.ptb / "ptb.train.txt.gz", "rt") as f:
        words = sorted({w for line in f for w in line.split()} - {"<unk>"})
    vocab = Vocab(["<unk>", "<eos>", *words])
    options = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "rnn.yaml"))
    options.pop("_target_")
    options.update(cell=args.cell, emb_size=650, hidden_size=650, num_layers=2)
    torch.manual_seed(0)
    net = RecurrentLM(len(vocab), **options).eval()
    out = Path(tempfile.mkdtemp(prefix="onnx-step-"))
    facts = export_onnx(Scorer(net, vocab), out, quantize="int8")
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"one thread; 2x650 {args.cell}, V = 10,000"
    )
    for kind, size in facts["bytes"].items():
        print(f"file {kind}: {size / 2**20:.1f} MiB")
    print("| batch | torch step (us) | onnxruntime float32 (us) | onnxruntime int8 (us) |")
    print("| --- | ---: | ---: | ---: |")
    for batch in (1, 16):
        x = torch.full((batch, 1), 5, dtype=torch.long)
        with torch.no_grad():
            hidden, state = net.features(x, None)

            def torch_step(x=x, state=state):
                h, _ = net.features(x, state)
                net.log_probs(h[:, -1], torch.float32)

            t_torch = timed(torch_step, args.steps)
        feeds = {
            "x": x.numpy(),
            "h0": np.zeros((2, batch, 650), np.float32),
            "c0": np.zeros((2, batch, 650), np.float32),
        }
        times = []
        for kind in ("with-state", "with-state.int8"):
            s = session(facts["files"][kind])
            times.append(timed(lambda s=s, feeds=feeds: s.run(None, feeds), args.steps))
        print(f"| {batch} | {t_torch:.0f} | {times[0]:.0f} | {times[1]:.0f} |")

    write_facts(out, facts)
    onnx = load_scorer(out)  # the file stepped one token at a time, as sherpa-onnx steps it
    with gzip.open(args.ptb / "ptb.test.txt.gz", "rt") as f:
        lines = [vocab.encode(line.split()) for line in f][: args.lines]
    worst, tokens = 0.0, 0
    for ids, ours in zip(lines, onnx.line_token_logprobs(lines)):
        with torch.no_grad():
            seq = torch.tensor([[Vocab.eos_id, *ids]])
            hidden, _ = net.features(seq, None)
            ref = net.log_probs(hidden[0], torch.float64)
            ref = ref[torch.arange(len(ids) + 1), torch.tensor([*ids, Vocab.eos_id])].numpy()
        worst = max(worst, float(np.abs(ours - ref).max()))
        tokens += len(ids) + 1
    print(
        f"PTB test, {len(lines)} sentences, {tokens} tokens: largest |difference| of a "
        f"token's log-probability, with-state file vs the network in float64: {worst:.2e}"
    )


def compare_trained(ckpt: Path, export: Path) -> None:
    """A trained run against its export, over the run's whole test split, every line from a
    sentence start: the largest difference of a token's log-probability, and the perplexities
    of the float32 and int8 files beside the checkpoint's (export.json)."""
    import json

    from seqlm.scorers import on_data

    scorer = load_scorer(ckpt, device="cpu")
    data, scorer = on_data(scorer, None)
    onnx = load_scorer(export)
    ids = data.ids["test"]
    lines = line_ids(ids, Vocab.eos_id)
    ref = np.concatenate(scorer.line_token_logprobs(lines))
    ours = onnx.token_logprobs(ids)
    facts = json.loads((export / "export.json").read_text())
    print(
        f"{ckpt}: {len(ids)} test tokens; largest |difference| of a token's log-probability, "
        f"with-state file vs the checkpoint: {np.abs(ours - ref).max():.2e}"
    )
    print("test ppl, each sentence alone:", json.dumps(facts.get("test_ppl", {})))
    print("file sizes (MiB):", {k: round(v / 2**20, 1) for k, v in facts["bytes"].items()})


if __name__ == "__main__":
    main()
