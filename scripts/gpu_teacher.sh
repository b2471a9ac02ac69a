#!/usr/bin/env bash
# The GPU job, prepared so that a session lent a GPU (the `device` tool) spends no minute of it
# waiting. It fine-tunes the shipped teacher with the session-21 recipe (256x256 crops, the one
# run that gained on the synthetic test and on reds-mini), scaled to a GPU: batch 16, a corpus
# of 8 blurs per photo plus sharp `still` frames. Here, once:
#     .venv/bin/python scripts/gpu_pack.py      # photos into .gpu/photos, within the carry limit
# then from the session: run(command="bash scripts/gpu_teacher.sh", carry=[".gpu"], timeout_s=600)
# On the GPU machine (its python3 has torch, OpenCV, scikit-image; nothing is installed) it builds
# the corpus on every core, times a 30-step probe, trains for TRAIN_MIN minutes with the step
# count that fills them (so the cosine schedule ends), scores the result against the shipped
# teacher on the test photos, and leaves in $OUT: teacher-gpu.pt (EMA weights), metrics.jsonl,
# eval-test.json, log.txt. Back here, judge it as the card does:
#     sharpen evaluate --weights FILES_AT/teacher-gpu.pt teacher --data runs/corpus --split test
#     sharpen evaluate --weights FILES_AT/teacher-gpu.pt teacher --data ../shared/data/reds-mini
# Knobs (environment): TRAIN_MIN (5), STEPS (set: no probe, this many steps), INIT (the weights
# to fine-tune and to score against; models/teacher-restormer-small.pt), BATCH (16), CROP (256),
# LR (2e-4), COPIES (8), STILL_SHARE (0.1), WORKERS (cores), PHOTOS (.gpu/photos), WORK
# (/tmp/gpu-teacher), DEVICE (auto), PYTHON (python3). A CPU smoke test (minutes): TRAIN_MIN=0.3
# BATCH=2 CROP=64 COPIES=1 DEVICE=cpu PHOTOS=<a folder with kodak24/ and ~40 photos>
# PYTHON=.venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-teacher-out}
WORK=${WORK:-/tmp/gpu-teacher}
PHOTOS=${PHOTOS:-.gpu/photos}
TRAIN_MIN=${TRAIN_MIN:-5}
BATCH=${BATCH:-16}
CROP=${CROP:-256}
LR=${LR:-2e-4}
COPIES=${COPIES:-8}
STILL_SHARE=${STILL_SHARE:-0.1}
WORKERS=${WORKERS:-$(nproc)}
DEVICE=${DEVICE:-auto}
INIT=${INIT:-models/teacher-restormer-small.pt}
STEPS=${STEPS:-}
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1
t0=$SECONDS
sharpen() { "$PY" -m sharpen.cli "$@"; }
say() { echo "[gpu_teacher $((SECONDS - t0)) s] $*"; }
slim() { "$PY" -c "import sys; from distill.checkpoint import slim_checkpoint as s; s(*sys.argv[1:])" "$@"; }

finish() {   # whatever was reached comes back, also after a failure or the time limit
    local ck="$WORK/teacher/last.pt"
    if [ -f "$ck" ] && [ ! -f "$OUT/teacher-gpu.pt" ]; then
        slim "$ck" "$OUT/teacher-gpu.pt" || true
    fi
    [ -f "$WORK/teacher/metrics.jsonl" ] && cp "$WORK/teacher/metrics.jsonl" "$OUT/" || true
    say "done"
}
trap finish EXIT

[ -d "$PHOTOS" ] || { echo "error: no photos at $PHOTOS: run scripts/gpu_pack.py here and carry .gpu" >&2; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

say "corpus: $COPIES blurs per training photo and sharp still frames, $WORKERS processes"
# A process a core, each on one OpenCV thread (else each runs a thread per core).
sharpen corpus --photos "$PHOTOS" --out "$WORK/corpus" --copies "$COPIES" --workers "$WORKERS" \
    --threads 1 --quiet
sharpen corpus --photos "$PHOTOS" --out "$WORK/still" --mix still --test-preset still --copies 1 \
    --workers "$WORKERS" --threads 1 --quiet

common=(--config configs/teacher-crop256.yaml "data.train=$WORK/corpus" "data.val=$WORK/corpus"
        "data.gt_train=$WORK/still" "data.gt_train_share=$STILL_SHARE" "data.batch_size=$BATCH" "data.crop=$CROP"
        "data.workers=$(( WORKERS < 8 ? WORKERS : 8 ))" "optim.lr=$LR" compile=false "device=$DEVICE"
        "init=$INIT" resume=never --quiet)
if [ -n "$STEPS" ]; then
    steps=$STEPS
else
    say "probe: 30 steps to time one"
    sharpen train-teacher "${common[@]}" "out=$WORK/probe" optim.steps=100000 stop_after=30 \
        val_start=false val_every=100000 ckpt_every=100000 log_every=10
    steps=$("$PY" - "$WORK/probe/metrics.jsonl" "$TRAIN_MIN" <<'EOF'
import json, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if "loss" in r and "time" in r]
a, b = rows[1], rows[-1]          # from step 20: the first steps include cuDNN's autotuning
per_step = (b["time"] - a["time"]) / max(1, b["step"] - a["step"])
print(max(50, int(float(sys.argv[2]) * 60 / per_step)))
print(f"{per_step:.3f} s per step", file=sys.stderr)
EOF
    )
fi
say "training: $steps steps at batch $BATCH (~$TRAIN_MIN min)"
sharpen train-teacher "${common[@]}" "out=$WORK/teacher" "optim.steps=$steps" \
    "optim.warmup_steps=$(( steps / 20 + 1 ))" "val_every=$(( steps / 4 + 1 ))" \
    "ckpt_every=$(( steps / 10 + 1 ))" "max_minutes=$("$PY" -c "print($TRAIN_MIN * 1.3 + 1)")"
slim "$WORK/teacher/last.pt" "$OUT/teacher-gpu.pt"

say "scoring against the shipped teacher on the test photos"
sharpen evaluate --weights "$OUT/teacher-gpu.pt" "$INIT" \
    --data "$WORK/corpus" --split test --device "$DEVICE" --out "$WORK/eval" --quiet
cp "$WORK/eval/metrics.json" "$OUT/eval-test.json"
