"""Warming the engine before a process's first job: what its first :func:`gdc.engine.segment` pays once.

In a fresh process the first segment() took 3.75 s where the next took 1.2-1.7 s (issue 41): torch's
optimisers import torch._dynamo on their first step (1.2-1.4 s on the 2-core EPYC), the stem's
weights load (gdc.features' ``cached_stem``), SLIC, autocast and the max-flow load on first use, and
the first photo-sized job's buffers are fresh memory. One segment() of a generated photo-sized scene,
one optimiser step and the options' samples, pays all of these; a worker runs it before its first
job and ``gdc segment`` before its timer. After it the first job on image_0108_9010 took 0.98-1.08x
the next (AVX2, float32), against 1.06-1.11x after a 32x32 segment of one step and one sample and
3.5-3.8x after none; in bfloat16 (AVX-512) 1.15-1.23x, since oneDNN sets up a bfloat16 product for
each new shape, which the next job on the same photo finds ready (benchmarks/RESULTS.md, 5. Speed).
"""
from __future__ import annotations

import numpy as np

from .engine import segment
from .options import SegmentOptions

WARM_UP_SIZE = (400, 600)  # (height, width): the data sets' photos are 0.15-0.25 MP


def warm_up(options: SegmentOptions | None = None) -> None:
    """Run one segment() of a generated two-class scene of :data:`WARM_UP_SIZE` under ``options`` (its device,
    weights, precision and samples; the paper's defaults when None), trained one step."""
    options = (options or SegmentOptions()).model_copy(update={"steps": 1, "seed": 0})
    height, width = WARM_UP_SIZE
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[:, width // 2 :] //= 3  # two textures: the edge step has a border to follow
    scribbles = np.zeros((height, width), dtype=np.uint8)
    scribbles[height // 4 : -height // 4, width // 8], scribbles[height // 4 : -height // 4, -width // 8] = 1, 2
    segment(image, scribbles, options)
