#!/usr/bin/env bash
# Reproduce the shipped models on the embedded default: train the Restormer teacher, cache its
# pseudo-labels, distil the `fast` and `seed` students, and write slim checkpoints to $DEST.
#   scripts/train_embedded.sh [RUN_DIR] [DEST]
# Budgets (minutes) and step counts come from the environment; defaults are the shipped run's.
set -euo pipefail
RUN=${1:-runs/embedded}
DEST=${2:-models}
PY=${PYTHON:-python}
TEACHER_MIN=${TEACHER_MIN:-4.3}
TEACHER_STEPS=${TEACHER_STEPS:-3500}
STUDENT_MIN=${STUDENT_MIN:-1.2}
STUDENT_STEPS=${STUDENT_STEPS:-3000}
WORKERS=${WORKERS:-8}
BATCH=${BATCH:-16}
S="$PY -m optimize.cli"
mkdir -p "$DEST"

$S train-teacher --config configs/teacher-small.yaml out=$RUN/teacher max_minutes=$TEACHER_MIN \
  optim.steps=$TEACHER_STEPS data.batch_size=$BATCH data.workers=$WORKERS ${TEACHER_EXTRA:-}
$PY -c "from distill.checkpoint import slim_checkpoint as s; s('$RUN/teacher/best.pt', '$DEST/teacher-restormer-small.pt')"

for split in train val test; do
  $S labels --data embedded --split $split --out $RUN/labels/$split \
    --teacher-weights $DEST/teacher-restormer-small.pt --tile 256 --overlap 32 --batch-size 8 --quiet
done

for student in fast seed; do
  $S distill --config configs/distill-$student.yaml out=$RUN/student-$student \
    data.labels=$RUN/labels/train data.val_labels=$RUN/labels/val max_minutes=$STUDENT_MIN \
    optim.steps=$STUDENT_STEPS data.batch_size=$BATCH data.workers=$WORKERS ${STUDENT_EXTRA:-}
  $PY -c "from distill.checkpoint import slim_checkpoint as s; s('$RUN/student-$student/best.pt', '$DEST/student-$student.pt')"
done
echo "models written to $DEST"
