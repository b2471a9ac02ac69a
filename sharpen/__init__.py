"""The `sharpen` application: one command line over distill, optimize, runtime and benchmarks,
and the end-to-end demo. Nothing below imports it."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("image-sharpening-kd")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
