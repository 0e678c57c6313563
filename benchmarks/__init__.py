"""gdc's benchmarks: the programs behind every figure in RESULTS.md, and their results by topic beside them.

They live in the source checkout, not in the wheel; ``gdc bench NAME`` (``./run gdc bench NAME``)
runs them, :mod:`benchmarks.commands` lists them.
"""
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]  # the repository: a benchmark run as `python -m benchmarks.X` runs here
