"""Training throughput of seqlm against a plain PyTorch loop, on the same model and data,
timed as what the user waits for.

    python benchmarks/throughput.py --ptb ../shared/data/ptb [--steps 600] [--base 60] \
        [--rounds 3] [-- extra overrides for seqlm]

Both train a 2x200 LSTM (embedding 200) on PTB with bptt 35, batch 20, SGD lr 20, gradient
clipping at 0.25, state carried and detached between windows. The plain loop is written here,
independently of seqlm, and timed over ``--steps`` optimizer steps after ``--base`` steps,
its own batching included. seqlm is timed as whole processes, with its defaults (W&B offline,
checkpoints, the progress bar): ``python -m seqlm train ... trainer.max_steps=BASE+STEPS``
minus ``trainer.max_steps=BASE``, so that start-up, data loading, the test pass and the final
checkpoint cancel and everything between batches (the loader, Lightning's loop, logging,
periodic checkpoints) is counted. Rounds alternate which runs first; the figure is the median
ratio seqlm / plain.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

STEPS_DEFAULT, BASE_DEFAULT = 600, 60  # 600 steps: ~100 s, against ~2 s of start-up noise
B, BPTT, H = 20, 35, 200


def read_ptb_train(root: Path) -> list[str]:
    p = root / "ptb.train.txt"
    if p.exists():
        text = p.read_text()
    else:
        with gzip.open(root / "ptb.train.txt.gz", "rt") as f:
            text = f.read()
    return [w for line in text.splitlines() for w in [*line.split(), "<eos>"]]


def plain_loop(words: list[str], steps: int, base: int) -> float:
    """The baseline: pytorch/examples-style, nothing but torch."""
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    data = torch.tensor([vocab[w] for w in words])
    n = (len(data) - 1) // B
    x = data[: n * B].view(B, n)
    y = data[1 : n * B + 1].view(B, n)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(len(vocab), H)
            self.rnn = nn.LSTM(H, H, 2, batch_first=True)
            self.out = nn.Linear(H, len(vocab))

        def forward(self, inp, state):
            o, state = self.rnn(self.emb(inp), state)
            return self.out(o), state

    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=20.0)
    state, start = None, None
    for step, i in enumerate(range(0, n - BPTT, BPTT)):
        if step == base:
            start = time.perf_counter()
        if step == base + steps:
            break
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = net(x[:, i : i + BPTT], state)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y[:, i : i + BPTT].flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 0.25)
        opt.step()
    return steps * B * BPTT / (time.perf_counter() - start)


def seqlm_process(root: Path, max_steps: int, run_dir: Path, overrides: list[str]) -> float:
    """Wall time of one whole ``python -m seqlm train`` process."""
    cmd = [
        sys.executable,
        "-m",
        "seqlm",
        "train",
        "model=lstm",
        "model.emb_size=200",
        "model.hidden_size=200",
        "model.num_layers=2",
        "data=ptb",
        f"data.root={root}",
        f"data.batch_size={B}",
        f"data.bptt={BPTT}",
        "optim=sgd",
        "trainer.accelerator=cpu",
        f"trainer.max_steps={max_steps}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def seqlm_loop(root: Path, steps: int, base: int, overrides: list[str]) -> float:
    """Tokens/s of the ``steps`` extra steps: the difference of two whole processes."""
    with tempfile.TemporaryDirectory() as out:
        short = seqlm_process(root, base, Path(out) / "short", overrides)
        long = seqlm_process(root, base + steps, Path(out) / "long", overrides)
    return steps * B * BPTT / (long - short)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptb", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=STEPS_DEFAULT)
    ap.add_argument("--base", type=int, default=BASE_DEFAULT)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for seqlm")
    args = ap.parse_args()
    words = read_ptb_train(args.ptb)
    plain, ours = [], []
    for r in range(args.rounds):
        if r % 2 == 0:
            plain.append(plain_loop(words, args.steps, args.base))
        ours.append(seqlm_loop(args.ptb, args.steps, args.base, args.overrides))
        if r % 2 == 1:
            plain.append(plain_loop(words, args.steps, args.base))
        print(f"round {r + 1}: plain {plain[-1]:.0f} tokens/s, seqlm {ours[-1]:.0f} tokens/s")
    ratios = [o / p for o, p in zip(ours, plain)]
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    for name, xs in (("plain loop", plain), ("seqlm", ours), ("ratio", ratios)):
        runs = ", ".join(f"{x:.3g}" for x in xs)
        print(f"{name:<10}  median {statistics.median(xs):10.4g}   runs [{runs}]")


if __name__ == "__main__":
    main()
