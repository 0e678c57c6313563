"""The ``gdc bench`` subcommands, one per benchmark module; ``apps.cli`` adds them when it runs from a checkout."""
from __future__ import annotations

from . import ablation, api, batch, peers, prompts, refine, speed

BENCHMARKS = (speed, peers, ablation, refine, batch, api, prompts)


def add_parsers(bench_commands) -> None:
    """Add each benchmark's subcommand (``gdc bench speed``, ...) to ``bench_commands``."""
    for benchmark in BENCHMARKS:
        benchmark.add_parser(bench_commands)
