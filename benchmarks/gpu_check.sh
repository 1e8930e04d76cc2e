#!/usr/bin/env bash
# One GPU, under five minutes: a 2x650 LSTM on PTB for a fixed number of steps in fp32, bf16 and
# fp16 mixed precision; prints tokens/s and validation perplexity for each.
#   bash benchmarks/gpu_check.sh            # PTB from ../shared/data/ptb, else PTB=DIR
# Needs a CUDA build of torch in the active environment (README, set-up).
set -euo pipefail
PTB=${PTB:-../shared/data/ptb}
STEPS=${STEPS:-400}          # about one epoch at batch 64 x bptt 35
OUT=${OUT:-gpu_check}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for precision in 32-true bf16-mixed 16-mixed; do
  python -m seqlm train model=lstm model.num_layers=2 model.emb_size=650 model.hidden_size=650 \
    model.out_dropout=0.5 data=ptb data.root="$PTB" data.batch_size=64 data.bptt=35 \
    trainer=gpu trainer.precision=$precision trainer.max_steps=$STEPS \
    trainer.enable_progress_bar=false logger=csv checkpoint.every_n_steps=0 \
    hydra.run.dir="$OUT/$precision" > "$OUT-$precision.log" 2>&1 \
    || { echo "$precision failed:"; tail -20 "$OUT-$precision.log"; }
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
print(f"{'precision':<12} {'tokens/s':>10} {'val ppl':>9} {'train s':>8} {'peak GPU MiB':>12}")
for p in ("32-true", "bf16-mixed", "16-mixed"):
    f = Path(sys.argv[1]) / p / "metrics.json"
    if not f.exists():
        print(f"{p:<12} (no result)")
        continue
    m = json.loads(f.read_text())
    print(f"{p:<12} {m['train/tokens_per_s']:>10.0f} {m['val/ppl']:>9.2f} {m['time/train_s']:>8.1f}"
          f" {m.get('memory/peak_gpu_bytes', 0) / 2**20:>12.0f}")
PY
