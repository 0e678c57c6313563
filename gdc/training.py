"""The train step: a fresh (or a previous round's) GDC head fitted to the scribbles on the feature grid.

Each step computes the head at a batch of the labelled cells and the ring around them alone
(gdc/batches.py, gdc/cells.py), not on the whole grid: on the icg-dev photo the bench times, 4.0
GFLOP for 20 steps where 14 steps on the grid took 31.9 (benchmarks/RESULTS.md, 5. Speed).
"""
from __future__ import annotations

import numpy as np
import torch

from .batches import LabelledCells
from .hooks import Hooks
from .net import GDCHead, head_input
from .options import SegmentOptions
from .scribbles import block_counts
from .warm import WarmStart


def class_weights(pixels_per_class: torch.Tensor, scheme: str) -> torch.Tensor:
    """Cross-entropy weights from the labelled pixels' class counts n_c (N = Σ n_c).

    ``paper`` is Eq. 6 as printed, w_c = n_c / N; ``inverse`` is N / (K n_c), which
    balances rare and frequent classes; ``none`` weighs every pixel alike.
    """
    if scheme == "none":
        return torch.ones_like(pixels_per_class)
    total = pixels_per_class.sum()
    if scheme == "paper":
        return pixels_per_class / total
    return total / (len(pixels_per_class) * pixels_per_class.clamp(min=1))


def cell_targets(expanded: np.ndarray, classes: int, grid: tuple[int, int], scheme: str, device) -> torch.Tensor:
    """(K, h, w) float32 cross-entropy targets on the feature grid, summing to 1.

    Arguments:
      expanded: (H, W) class indices at the working size, -1 unlabeled (the grown scribbles).
      classes: K.
      grid: (h, w), the features' size.
      scheme: the :func:`class_weights` scheme.

    Training on these is the full-resolution cross-entropy over labelled pixels with the logits of
    each cell copied to the pixels it covers, at the cost of the grid alone.
    """
    counts = torch.from_numpy(block_counts(expanded, classes, grid)).to(device)
    targets = counts * class_weights(counts.sum((1, 2)), scheme).view(classes, 1, 1)
    targets /= targets.sum()
    return targets


def head_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The head's compute type: bfloat16 where the device runs it natively, when ``precision`` is auto.

    On a CPU, natively means instructions for it and torch's kernels built for them (its capability
    AVX512): where torch runs its AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``) bfloat16 is emulated.
    """
    if precision != "auto":
        return getattr(torch, precision)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        capabilities = torch.cpu.get_capabilities()
        instructions = capabilities.get("avx512_bf16", False) or capabilities.get("amx_bf16", False)
        native = instructions and "AVX512" in torch.backends.cpu.get_cpu_capability()
    return torch.bfloat16 if native else torch.float32


def make_optimiser(parameters, options: SegmentOptions) -> torch.optim.Optimizer:
    """The optimiser ``options.optimiser`` names, at ``options.lr`` and ``options.momentum``."""
    if options.optimiser == "sgd":
        return torch.optim.SGD(parameters, lr=options.lr, momentum=options.momentum)
    # Fused: one pass over all the head's weights, where the default loops over them in Python (0.7 against
    # 1.4 ms a step in a job on the 2-core CPU, about 1% of its time); the same update, rounded otherwise.
    return torch.optim.Adam(parameters, lr=options.lr, betas=(options.momentum, 0.999), fused=True)


def start_head(
    classes: tuple[int, ...] | np.ndarray,
    options: SegmentOptions,
    generator: torch.Generator,
    device: torch.device,
    reuse: WarmStart | None,
) -> tuple[GDCHead, torch.optim.Optimizer]:
    """A head for ``classes`` and its optimiser at ``options.lr`` and ``options.momentum``: fresh, or going on
    from ``reuse`` (a refine, whose options are :meth:`SegmentOptions.for_refine`)."""
    head = GDCHead(
        len(classes), conv=options.conv, width=options.width, sigma=options.sigma, generator=generator, device=device
    )
    optimiser = make_optimiser(head.parameters(), options)
    if reuse is not None:  # a refine goes on training the previous head with its optimiser's state
        reuse.load_head(head, classes)
        reuse.load_optimiser(optimiser, head, classes, options.optimiser)
    return head, optimiser


def train_head(
    head: GDCHead,
    optimiser: torch.optim.Optimizer,
    features: torch.Tensor,
    cells: LabelledCells,
    *,
    steps: int,
    stop_below: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    hooks: Hooks,
) -> int:
    """Fit ``head`` to the targets of ``cells``; the steps taken.

    Arguments:
      features: (1, C, h, w) float32 stem features.
      cells: the labelled cells (:class:`gdc.batches.LabelledCells`, from :func:`cell_targets`' targets): each step
        computes the head at its batch of them and the rings around (gdc/cells.py), not on the whole grid.
      steps: the most optimiser steps.
      stop_below: stop once the loss is below this (0: never early). A refine stops once its strokes
        are fitted: strokes the head already agrees with take few steps, ones it contradicts more.
      generator: draws the batches (and, through the head, the offsets), so runs repeat.
      dtype: the head's compute type (:func:`head_dtype`); its weights and the loss stay float32.
    """
    mixed = dict(device_type=features.device.type, dtype=dtype, enabled=dtype != torch.float32)
    features = head_input(features, dtype)
    head.train()
    trained = 0
    while trained < steps:
        hooks.report("optimise", trained, steps)
        batch = cells.batch(generator)
        with torch.autocast(**mixed):
            logits = head.logits_at(features, batch.rings)
        loss = batch.loss(logits)
        if stop_below and loss.item() < stop_below:
            break
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        trained += 1
        hooks.check_cancel()
    hooks.report("optimise", steps, steps)
    return trained
