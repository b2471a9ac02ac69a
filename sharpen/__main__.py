"""`python -m sharpen`: the `sharpen` console script's command line, for a source tree or an
environment whose bin/ is not on PATH."""
import sys

from .cli import main

if __name__ == "__main__":   # imported (doc tools, a module scan) it runs nothing
    sys.exit(main())
