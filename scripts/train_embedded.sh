#!/usr/bin/env bash
# Reproduce the shipped models on the embedded default: train the Restormer teacher, cache its
# pseudo-labels, distil the `fast` and `seed` students, and write slim checkpoints to DEST.
#   scripts/train_embedded.sh [RUN_DIR] [DEST]
# Everything else comes from the environment (defaults: the shipped run, see models/*.md):
#   PHASES="teacher labels students"   which phases to run
#   TEACHER=PATH                       teacher for labels (default: DEST's, written by phase 1)
#   STUDENT_INIT=DIR                   fine-tune students from DIR/student-<name>.pt
#   TEACHER_MIN/STEPS, FAST_MIN/STEPS, SEED_MIN/STEPS, WORKERS, BATCH
set -euo pipefail
RUN=${1:-runs/embedded}
DEST=${2:-models}
PY=${PYTHON:-python}
PHASES=${PHASES:-teacher labels students}
TEACHER=${TEACHER:-$DEST/teacher-restormer-small.pt}
WORKERS=${WORKERS:-8}
BATCH=${BATCH:-16}
S="$PY -m sharpen.cli"
slim() { $PY -c "from distill.checkpoint import slim_checkpoint as s; s('$1', '$2')"; }
mkdir -p "$DEST"

if [[ " $PHASES " == *" teacher "* ]]; then
  $S train-teacher --config configs/teacher-small.yaml out=$RUN/teacher \
    max_minutes=${TEACHER_MIN:-4.0} optim.steps=${TEACHER_STEPS:-6000} \
    data.batch_size=$BATCH data.workers=$WORKERS ${TEACHER_EXTRA:-}
  slim $RUN/teacher/best.pt $DEST/teacher-restormer-small.pt
  TEACHER=$DEST/teacher-restormer-small.pt
fi

if [[ " $PHASES " == *" labels "* ]]; then
  for split in ${LABEL_SPLITS:-train val test}; do
    $S labels --data embedded --split $split --out $RUN/labels/$split \
      --teacher-weights $TEACHER --tile 512 --overlap 64 --batch-size 4 --quiet
  done
fi

if [[ " $PHASES " == *" students "* ]]; then
  for student in fast seed; do
    up=${student^^}
    min=${up}_MIN; steps=${up}_STEPS
    init=""
    [ -n "${STUDENT_INIT:-}" ] && init="init=$STUDENT_INIT/student-$student.pt"
    $S distill --config configs/distill-$student.yaml out=$RUN/student-$student \
      data.labels=$RUN/labels/train data.val_labels=$RUN/labels/val \
      max_minutes=${!min:-1.1} optim.steps=${!steps:-4000} data.batch_size=$BATCH \
      data.workers=$WORKERS $init ${STUDENT_EXTRA:-}
    slim $RUN/student-$student/best.pt $DEST/student-$student.pt
  done
fi
echo "models written to $DEST"
