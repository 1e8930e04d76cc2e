#!/usr/bin/env bash
# Everything a GPU has to show, in one go, written to $OUT/gpu_results.md with the card and the
# date (paste it into docs/results.md, "GPUs"):
#  1. the gpu tests (tests/test_gpu.py) and the precision tests on every device
#     (tests/training/test_precision.py);
#  2. a 2x650 LSTM on PTB for a fixed number of steps in fp32, bf16 and fp16 mixed precision,
#     then each cell (1x650) in each precision (tokens/s, validation perplexity, peak memory);
#  3. one epoch of AWD-LSTM (experiment=awd_lstm_ptb: seconds for the epoch, its first
#     validation perplexity, and whether cuDNN warned about weights outside one buffer);
#  4. a WikiText-103-shaped step with a full and an adaptive softmax, the recurrent cells alone;
#  5. with two GPUs or more, the 2x650 LSTM on 1 and 2 GPUs (DDP scaling).
#   bash benchmarks/gpu_check.sh            # PTB from ../shared/data/ptb, else PTB=DIR
# Needs a CUDA build of torch in the active environment (README, set-up).
set -euo pipefail
PTB=${PTB:-../shared/data/ptb}
STEPS=${STEPS:-400}          # about one epoch at batch 64 x bptt 35
CELL_STEPS=${CELL_STEPS:-200}
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
CARD=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1 || echo unknown)
GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
{ echo "## GPU check: $CARD x$GPUS, $(date -u +%Y-%m-%d)"; echo; } > "$OUT/gpu_results.md"

python -m pytest -p no:cacheprovider -q -rs tests/test_gpu.py tests/training/test_precision.py \
  > "$OUT/tests.log" 2>&1 && tests=passed || tests=FAILED
{ echo "gpu tests: $tests ($(tail -1 "$OUT/tests.log"))"; echo; } | tee -a "$OUT/gpu_results.md"

ptb_run() {  # ptb_run NAME PRECISION STEPS [overrides...]
  local name=$1 precision=$2 steps=$3; shift 3
  python -m seqlm train data=ptb data.root="$PTB" data.batch_size=64 data.bptt=35 \
    trainer=gpu trainer.precision="$precision" trainer.max_steps="$steps" \
    trainer.enable_progress_bar=false logger=csv checkpoint.every_n_steps=0 \
    hydra.run.dir="$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 \
    || { echo "$name failed:"; tail -20 "$OUT/$name.log"; }
}
for precision in 32-true bf16-mixed 16-mixed; do
  ptb_run "lstm2x650-$precision" "$precision" "$STEPS" model=lstm model.num_layers=2 \
    model.emb_size=650 model.hidden_size=650 model.out_dropout=0.5
  for cell in gru rnn mogrifier mingru minlstm; do
    ptb_run "$cell-$precision" "$precision" "$CELL_STEPS" model=$cell model.emb_size=650 \
      model.hidden_size=650
  done
done
if [ "$GPUS" -ge 2 ]; then
  for n in 1 2; do
    ptb_run "ddp$n" 32-true "$STEPS" trainer=ddp trainer.devices=$n model=lstm \
      model.num_layers=2 model.emb_size=650 model.hidden_size=650 model.out_dropout=0.5
  done
fi
python - "$OUT" >> "$OUT/gpu_results.md" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| run | precision | tokens/s | val ppl | train s | peak GPU MiB |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for f in sorted(out.glob("*/metrics.json")):
    m = json.loads(f.read_text())
    if "train/tokens_per_s" not in m:
        continue
    print(f"| {f.parent.name} | {m.get('train/precision', '')} | {m['train/tokens_per_s']:.0f} "
          f"| {m.get('val/ppl') or float('nan'):.2f} | {m['time/train_s']:.1f} "
          f"| {m.get('memory/peak_gpu_bytes', 0) / 2**20:.0f} |")
print()
PY
cat "$OUT/gpu_results.md"

# AWD-LSTM, one epoch and its validation (awd-lstm-lm reports val ppl 308 after epoch 1 on the
# PyTorch 0.1.12 branch, batch 20). PYTHONWARNINGS=always so that a cuDNN weight-format warning
# would reach the log once per call site.
PYTHONWARNINGS=always python -m seqlm train experiment=awd_lstm_ptb data.root="$PTB" trainer=gpu \
  trainer.max_epochs=1 trainer.enable_progress_bar=false logger=csv checkpoint.every_n_steps=0 \
  hydra.run.dir="$OUT/awd_lstm_ptb" > "$OUT/awd.log" 2>&1 \
  || { echo "awd_lstm_ptb failed:"; tail -20 "$OUT/awd.log"; }
python - "$OUT" | tee -a "$OUT/gpu_results.md" <<'PY'
import json, sys
from pathlib import Path
f = Path(sys.argv[1]) / "awd_lstm_ptb"
if (f / "history.jsonl").exists():
    first = json.loads((f / "history.jsonl").read_text().splitlines()[0])
    m = json.loads((f / "metrics.json").read_text())
    print(f"awd_lstm_ptb epoch 1: {first['time_s']:.0f} s to its validation, val ppl "
          f"{first['val/ppl']:.1f}; {m['train/tokens_per_s']:.0f} tokens/s")
PY
if grep -q "contiguous chunk of memory" "$OUT/awd.log"; then
  echo "weight drop: cuDNN warned (weights not in one buffer); see $OUT/awd.log"
else
  echo "weight drop: no cuDNN weight-format warning"
fi | tee -a "$OUT/gpu_results.md"

# A WikiText-103-shaped step (267,735 words, 1x512 LSTM, batch 32x35), full against adaptive
# softmax, in float32 and bf16 (the calls alone; benchmarks/softmax_step.py says what is timed).
for precision in fp32 bf16; do
  python benchmarks/softmax_step.py --device cuda --precision $precision --steps 20 \
    2>&1 | tee -a "$OUT/gpu_results.md" || echo "softmax_step $precision failed"
done

# The recurrent layers alone (1x400, batch 32, forward and backward): the cells after the
# tutorial beside cuDNN's LSTM and GRU, the minimal cells' parallel scan against their loop.
python benchmarks/ptb_budget.py layers --device cuda 2>&1 | tee -a "$OUT/gpu_results.md" \
  || echo "cell layers failed"
