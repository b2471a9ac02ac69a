"""`python -m sharpen`: the `sharpen` console script's command line, for a source tree or an
environment whose bin/ is not on PATH."""
import sys

from .cli import main

sys.exit(main())
