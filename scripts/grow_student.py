"""Grow a trained fast-family student without changing its output, then fine-tune it with
`sharpen distill ... init=DST "model.args={...}"`:

    python scripts/grow_student.py models/student-fast.pt runs/grown.pt low_blocks=4 low_k=7
"""
import sys

from distill.grow import grow_student

if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    changes = {k: int(v) for k, v in (a.split("=", 1) for a in sys.argv[3:])}
    print(grow_student(sys.argv[1], sys.argv[2], **changes))
