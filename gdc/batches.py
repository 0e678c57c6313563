"""The cells a training step's loss reads: every labelled cell, or a batch drawn from them.

The loss on the grid (gdc/training.py) is L = -Σ_x Σ_k t_k(x) log p_k(x) over the labelled cells x,
with class-weighted targets t summing to 1. Write m(x) = Σ_k t_k(x), the cell's share of the loss,
and q(x) = t(x) / m(x), its class distribution: L = Σ_x m(x) ℓ(x), with ℓ(x) = -Σ_k q_k(x) log p_k(x).
Drawing n cells with replacement, each draw landing on x with probability m(x), and weighting each
cell by its count over n gives L̂ = Σ_x (count(x) / n) ℓ(x), whose expectation is L: the same loss,
unbiased and on the same scale (a stop rule reads it), at the cost of the drawn cells' rings
(gdc/cells.py) however large the labelled area. Drawn in proportion to the class-weighted mass, a
rare class keeps its share of every batch (drawing without replacement instead flattens the class
weights where a batch is a large part of a small label set). The draws are systematic (n evenly
spaced points along the cumulative mass, at one random offset), which keeps E[count(x)] = n m(x)
but holds each count to ⌊n m(x)⌋ or ⌈n m(x)⌉: independent draws' estimate of the loss misled a
refine's stop rule. Where the labelled cells' own ring costs no more than a batch's, every step
reads them all: the full loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .cells import Rings

RING_PER_DRAW = 9  # a drawn cell's inner ring: itself and its 8 neighbours, shared where draws are close


@dataclass(frozen=True)
class Batch:
    """The cells one training step reads and their weights.

    Attributes:
      rings: the cells and the rings the head's convs read for them (:class:`gdc.cells.Rings`).
      weights: (P,) float32, each cell's weight in the loss.
      targets: (P, K) float32, each cell's class distribution (rows sum to 1).
    """

    rings: Rings
    weights: torch.Tensor
    targets: torch.Tensor

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """The weighted cross-entropy of the (P, K) ``logits`` at the cells, float32."""
        return -(self.weights * (self.targets * logits.float().log_softmax(1)).sum(1)).sum()


@dataclass(frozen=True)
class LabelledCells:
    """The labelled cells of the grid and how a step picks its batch of them.

    Attributes:
      size: (h, w), the grid's.
      cells: (L,) int64 flat indices of the cells with a target, ascending.
      mass: (L,) float32, each cell's share of the loss m (sums to 1).
      targets: (L, K) float32, each cell's class distribution q.
      draws: cells drawn per step; 0 when every step reads them all.
      everything: the batch of all of them, which every step reads when ``draws`` is 0; else None.
      cumulative: (L,) the cells' mass summed in raster order, along which the draws are spaced.
    """

    size: tuple[int, int]
    cells: torch.Tensor
    mass: torch.Tensor
    targets: torch.Tensor
    draws: int
    everything: Batch | None
    cumulative: torch.Tensor

    @classmethod
    def of(cls, targets: torch.Tensor, draws: int) -> LabelledCells:
        """The cells of (K, h, w) ``targets`` (from :func:`gdc.training.cell_targets`), drawn ``draws`` a step, or
        all of them every step where ``draws`` is 0 or their ring is no larger than ``draws`` apart would have."""
        size = tuple(targets.shape[-2:])
        flat = targets.flatten(1)
        mass = flat.sum(0)
        cells = mass.nonzero().squeeze(1)
        mass = mass[cells]
        per_cell = flat[:, cells].T / mass[:, None]
        rings = Rings.around(cells, *size)
        cumulative = torch.cumsum(mass, 0)
        if draws == 0 or len(rings.inner) <= RING_PER_DRAW * draws:
            return cls(size, cells, mass, per_cell, 0, Batch(rings, mass, per_cell), cumulative)
        return cls(size, cells, mass, per_cell, draws, None, cumulative)

    def batch(self, generator: torch.Generator | None) -> Batch:
        """The next step's cells: all of them, or ``draws`` drawn with replacement in proportion to their mass, each
        weighted by its count over ``draws``.

        The draws are systematic: ``draws`` points evenly spaced, at an offset drawn from ``generator``, along the
        cells' cumulative mass in raster order. A cell is drawn ⌊n m⌋ or ⌈n m⌉ times, n m on average, as
        independent draws would on average only; and the batch spreads over the grid as the labelled cells do.
        """
        if self.everything is not None:
            return self.everything
        offset = torch.rand((), generator=generator, device=self.mass.device)
        points = (torch.arange(self.draws, device=self.mass.device) + offset) / self.draws
        drawn = torch.searchsorted(self.cumulative, points * self.cumulative[-1], right=True)
        counts = torch.bincount(drawn.clamp_(max=len(self.cells) - 1), minlength=len(self.cells))
        picked = counts.nonzero().squeeze(1)
        rings = Rings.around(self.cells[picked], *self.size)
        return Batch(rings, counts[picked].to(self.mass.dtype) / self.draws, self.targets[picked])
