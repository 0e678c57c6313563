"""What a caller of :func:`gdc.engine.segment` hears and says while it runs: progress, cancel, timings."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import Cancelled

# progress(phase, step, total): phases are "superpixels", "features", "optimise", "sample", "edges" (when on).
ProgressHook = Callable[[str, int, int], None]
CancelHook = Callable[[], bool]


@dataclass
class Hooks:
    """The caller's progress and cancel hooks (either may be None) and the seconds spent per phase."""

    progress: ProgressHook | None = None
    cancel: CancelHook | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def report(self, phase: str, step: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, step, total)

    def check_cancel(self) -> None:
        """Raise :class:`Cancelled` when the caller asked to stop."""
        if self.cancel is not None and self.cancel():
            raise Cancelled("segmentation cancelled")

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start
