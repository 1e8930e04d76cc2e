"""Training throughput of seqlm against a plain PyTorch loop, on the same model and data.

    python benchmarks/throughput.py --ptb ../shared/data/ptb [--steps 300] [--rounds 3]

Both train a 2x200 LSTM (embedding 200) on PTB with bptt 35, batch 20, SGD lr 20, gradient
clipping at 0.25, state carried and detached between windows. The plain loop is written here,
independently of seqlm. Each round times ``--steps`` optimizer steps after ``--warmup`` steps,
for both, in alternating order; tokens/s is input tokens per second of training-loop wall
time. Prints both, and the median ratio seqlm / plain.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

STEPS_DEFAULT, WARMUP_DEFAULT = 300, 20
B, BPTT, H = 20, 35, 200


def read_ptb_train(root: Path) -> list[str]:
    p = root / "ptb.train.txt"
    if p.exists():
        text = p.read_text()
    else:
        with gzip.open(root / "ptb.train.txt.gz", "rt") as f:
            text = f.read()
    return [w for line in text.splitlines() for w in [*line.split(), "<eos>"]]


def plain_loop(words: list[str], steps: int, warmup: int) -> float:
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
        if step == warmup:
            start = time.perf_counter()
        if step == warmup + steps:
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


def seqlm_loop(root: Path, steps: int, warmup: int) -> float:
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_module

    from seqlm.commands.train import train

    class Timer(pl.Callback):
        """Wall time of training batches warmup .. warmup+steps-1 (forward to optimizer step)."""

        def __init__(self):
            self.batches, self.start, self.seconds = 0, 0.0, float("nan")

        def on_train_batch_start(self, *args):
            if self.batches == warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, *args):
            self.batches += 1
            if self.batches == warmup + steps:
                self.seconds = time.perf_counter() - self.start

    timer = Timer()
    with initialize_config_module("seqlm.conf", version_base="1.3"):
        cfg = compose(
            "train",
            [
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
                f"trainer.max_steps={warmup + steps}",
                "trainer.enable_progress_bar=false",
                "logger=none",
                "+trainer.limit_val_batches=0",
            ],
        )
    with tempfile.TemporaryDirectory() as out:
        train(cfg, run_dir=Path(out), callbacks=[timer], evaluate=False)
    return steps * B * BPTT / timer.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptb", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=STEPS_DEFAULT)
    ap.add_argument("--warmup", type=int, default=WARMUP_DEFAULT)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    words = read_ptb_train(args.ptb)
    plain, ours = [], []
    for r in range(args.rounds):
        first, second = (plain_loop, seqlm_loop) if r % 2 == 0 else (seqlm_loop, plain_loop)
        for fn in (first, second):
            if fn is plain_loop:
                plain.append(plain_loop(words, args.steps, args.warmup))
            else:
                ours.append(seqlm_loop(args.ptb, args.steps, args.warmup))
    ratios = [o / p for o, p in zip(ours, plain)]
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    for name, xs in (("plain loop", plain), ("seqlm", ours), ("ratio", ratios)):
        runs = ", ".join(f"{x:.3g}" for x in xs)
        print(f"{name:<10}  median {statistics.median(xs):10.4g}   runs [{runs}]")


if __name__ == "__main__":
    main()
