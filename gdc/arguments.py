"""Command-line pieces that several commands share: the engine's option flags and a progress bar.

Used by ``gdc.cli``, the benchmarks and the service's commands, so none of them needs the
top floor (``gdc.cli``) itself.
"""
from __future__ import annotations

import argparse
import os
import sys

from .options import HEAD_CONVS, SegmentOptions
from .threads import DEFAULT_THREADS


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--server`` and ``--api-key``, for the commands that talk to a gdc server (GDC_SERVER, GDC_API_KEY)."""
    parser.add_argument(
        "--server",
        default=os.environ.get("GDC_SERVER", "http://127.0.0.1:8000"),
        help="server URL (default: GDC_SERVER or http://127.0.0.1:8000)",
    )
    parser.add_argument("--api-key", default=os.environ.get("GDC_API_KEY"), help="X-API-Key (default: GDC_API_KEY)")


def at_least_one(what: str):
    """An argparse type: a whole number of ``what`` (threads, jobs, ...), at least 1, named in its error."""

    def whole_number(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"expected a whole number of {what}, at least 1, got {text!r}")
        return int(text)

    return whole_number


thread_count = at_least_one("threads")


def comma_separated(kind):
    """An argparse type: a comma-separated list of ``kind`` (int, float), named in its error."""

    def values(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s separated by commas, got {text!r}") from None

    return values


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The SegmentOptions flags shared by ``segment`` and ``eval``; unset ones keep their defaults."""
    fields = SegmentOptions.model_fields
    group = parser.add_argument_group("engine options")
    group.add_argument("--conv", choices=HEAD_CONVS, help=f"context conv (default {fields['conv'].default})")
    edges_help = f"{fields['edges'].description} (default on)"
    group.add_argument("--edges", action=argparse.BooleanOptionalAction, help=edges_help)
    numeric = (
        ("steps", int), ("samples", int), ("sigma", float), ("lr", float), ("superpixel_size", int), ("width", int),
        ("edge_strength", float),
    )
    for name, kind in numeric:
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{fields[name].description} (default {fields[name].default})")
    group.add_argument("--optimiser", choices=("sgd", "adam"), help=fields["optimiser"].description)
    group.add_argument("--class-weights", choices=("inverse", "paper", "none"), help=fields["class_weights"].description)
    group.add_argument("--feature-stride", type=int, choices=(2, 4), help=fields["feature_stride"].description)
    group.add_argument("--precision", choices=("auto", "float32", "bfloat16"), help=fields["precision"].description)
    group.add_argument("--device", help="torch device, e.g. cpu or cuda (default cpu)")
    group.add_argument("--weights", help=f"{fields['weights'].description} (default {fields['weights'].default})")
    group.add_argument(
        "--threads", type=thread_count, default=DEFAULT_THREADS,
        help=f"torch CPU threads (default {DEFAULT_THREADS}: steady when other programs share the cores; see gdc.threads)",
    )


def engine_options(args: argparse.Namespace, **overrides) -> SegmentOptions:
    given = {name: getattr(args, name) for name in SegmentOptions.model_fields if getattr(args, name, None) is not None}
    return SegmentOptions(**{**given, **overrides})


class ProgressBar:
    """A tqdm bar per phase on a terminal; silent elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.phase = None

    def __call__(self, phase: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, desc=f"{phase:>11}", leave=False, file=sys.stderr)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
