"""One training step of a WikiText-103-shaped network, full against adaptive softmax: the
milliseconds of forward + backward + AdamW update, and the peak memory, on the CPU or a GPU.

    python benchmarks/softmax_step.py [--device cuda] [--vocab 267735] [--hidden 512]

The network is ``RecurrentLM`` as ``model=lstm`` builds it (one layer, embedding and hidden
``--hidden``), a batch of ``--batch`` x ``--bptt`` tokens drawn from a Zipf law over the
frequency-ranked ids (rank r with probability proportional to 1/(r+1)), so that the adaptive
softmax's clusters see the share of targets a real corpus gives them. Each figure is the
median of ``--steps`` timed steps after 3 warm-up steps (the calls alone: no data loading, no
Lightning); peak memory is CUDA's allocator peak of each run on a GPU, the process's peak RSS on
the CPU (so there, give one ``--softmax`` a process).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
from omegaconf import OmegaConf

from seqlm.conf import CONF_DIR
from seqlm.models import RecurrentLM


def network(vocab: int, hidden: int, softmax: str) -> RecurrentLM:
    preset = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "rnn.yaml"))
    preset.pop("_target_")
    preset.update(cell="lstm", emb_size=hidden, hidden_size=hidden, softmax=softmax)
    return RecurrentLM(vocab, **preset)


def zipf_tokens(vocab: int, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    weights = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    return torch.multinomial(weights, shape[0] * shape[1], True, generator=generator).view(shape)


def time_steps(args, softmax: str) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = network(args.vocab, args.hidden, softmax).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    batches = [zipf_tokens(args.vocab, (args.batch, args.bptt + 1), gen) for _ in range(4)]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def step(tokens: torch.Tensor) -> None:
        tokens = tokens.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            hidden, _ = net.features(tokens[:, :-1])
            loss = -net.target_log_probs(hidden, tokens[:, 1:]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(3):
        step(batches[i % 4])
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        step(batches[i % 4])
        sync()
        times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    ms = 1000 * statistics.median(times)
    return {
        "softmax": softmax,
        "step_ms": round(ms, 2),
        "tokens_per_s": round(args.batch * args.bptt / (ms / 1000)),
        "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 1),
        "peak_MiB": round(peak),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vocab", type=int, default=267_735)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--softmax", nargs="+", default=["full", "adaptive"])
    args = ap.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"{name}: V={args.vocab} H={args.hidden} batch {args.batch}x{args.bptt} {args.precision}")
    rows = [time_steps(args, s) for s in args.softmax]
    for r in rows:
        print(json.dumps(r))
    if len(rows) == 2:
        print(f"adaptive speed-up: {rows[0]['step_ms'] / rows[1]['step_ms']:.1f}x")


if __name__ == "__main__":
    main()
