#!/usr/bin/env bash
# One GPU: a 2x650 LSTM on PTB for a fixed number of steps in fp32, bf16 and fp16 mixed
# precision (tokens/s and validation perplexity for each), then one epoch of AWD-LSTM
# (experiment=awd_lstm_ptb: seconds for the epoch, its first validation perplexity, and whether
# cuDNN warned about weights outside one buffer while weight drop was on), then a
# WikiText-103-shaped step with a full and an adaptive softmax, and the recurrent cells alone
# (the Mogrifier LSTM, minGRU and minLSTM beside cuDNN's LSTM and GRU).
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

# AWD-LSTM, one epoch and its validation (awd-lstm-lm reports val ppl 308 after epoch 1 on the
# PyTorch 0.1.12 branch, batch 20). PYTHONWARNINGS=always so that a cuDNN weight-format warning
# would reach the log once per call site.
PYTHONWARNINGS=always python -m seqlm train experiment=awd_lstm_ptb data.root="$PTB" trainer=gpu \
  trainer.max_epochs=1 trainer.enable_progress_bar=false logger=csv checkpoint.every_n_steps=0 \
  hydra.run.dir="$OUT/awd_lstm_ptb" > "$OUT-awd.log" 2>&1 \
  || { echo "awd_lstm_ptb failed:"; tail -20 "$OUT-awd.log"; }
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
f = Path(sys.argv[1]) / "awd_lstm_ptb"
if (f / "history.jsonl").exists():
    first = json.loads((f / "history.jsonl").read_text().splitlines()[0])
    m = json.loads((f / "metrics.json").read_text())
    print(f"awd_lstm_ptb epoch 1: {first['time_s']:.0f} s to its validation, val ppl "
          f"{first['val/ppl']:.1f}; {m['train/tokens_per_s']:.0f} tokens/s")
PY
if grep -q "contiguous chunk of memory" "$OUT-awd.log"; then
  echo "weight drop: cuDNN warned (weights not in one buffer); see $OUT-awd.log"
else
  echo "weight drop: no cuDNN weight-format warning"
fi

# A WikiText-103-shaped step (267,735 words, 1x512 LSTM, batch 32x35), full against adaptive
# softmax, in float32 and bf16 (the calls alone; benchmarks/softmax_step.py says what is timed).
for precision in fp32 bf16; do
  python benchmarks/softmax_step.py --device cuda --precision $precision --steps 20 \
    || echo "softmax_step $precision failed"
done

# The recurrent layers alone (1x400, batch 32, forward and backward): the cells after the
# tutorial beside cuDNN's LSTM and GRU, the minimal cells' parallel scan against their loop.
python benchmarks/ptb_budget.py layers --device cuda || echo "cell layers failed"
