"""Grow a trained fast-family student without changing its output, then fine-tune it with
`sharpen distill ... init=DST "model.args={...}"`:

    python scripts/grow_student.py models/student-fast.pt runs/grown.pt low_blocks=4
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from distill.checkpoint import CheckpointError  # noqa: E402
from distill.grow import grow_student  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) < 4 or any("=" not in a for a in sys.argv[3:]):
        sys.exit(__doc__)
    try:
        changes = {k: int(v) for k, v in (a.split("=", 1) for a in sys.argv[3:])}
        print(grow_student(sys.argv[1], sys.argv[2], **changes))
    except (ValueError, CheckpointError, FileNotFoundError) as e:
        sys.exit(f"grow_student: error: {e}")
