"""3x3 convolutions at a set of cells of a map: what a training step computes of the head.

A training step's loss reads the head's logits at a few cells of the feature grid: the labelled
ones, or a batch drawn from them (gdc/batches.py). The head stacks two 3x3 convs (the GDC
module's local conv, then the classifier's), so logits at those cells read the GDC module at
the cells and one ring around them. Each conv computed at its cells alone, as its taps' rows
gathered and multiplied by its weights (im2col over a list of cells), gives the whole map's
convs' values there, at the cost of the ring instead of the map: on icg-dev's photos a fifth of
the cells are labelled, on GrabCut's a twentieth, and a drawn batch is a few hundred.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .convs import DIRECTIONS, fold_pointwise


@dataclass(frozen=True)
class Rings:
    """The cells two stacked 3x3 convs (zero padding) read for their outputs at ``cells`` of an (H, W) map.

    Attributes:
      cells: (P,) int64 flat indices ``row * W + col`` of the outputs.
      inner: (P1,) the cells and the ring around them inside the map, ascending: where the first conv is needed.
      cell_taps: (P, 9) each cell's 3x3 taps as rows of ``inner``, in nn.Conv2d's tap order; a tap off the
        map is row P1 (it reads zero).
      inner_taps: (P1, 9) each inner cell's taps as flat cells of the map (H * W off the map).
    """

    cells: torch.Tensor
    inner: torch.Tensor
    cell_taps: torch.Tensor
    inner_taps: torch.Tensor

    @classmethod
    def around(cls, cells: torch.Tensor, height: int, width: int) -> Rings:
        """The rings around the (P,) flat ``cells`` of an (height, width) map."""
        # Worked out in the map bordered by one ring, where every cell's 8 neighbours have indices.
        border = _Bordered(height, width, cells.device)
        at = border.indices(cells)
        inner = border.grown(at)
        whole_map = border.indices(torch.arange(height * width, device=cells.device))  # the first conv's input rows
        return cls(cells, border.flat(inner), border.taps(at, inner), border.taps(inner, whole_map))


def conv_at(rows: torch.Tensor, taps: torch.Tensor, conv: nn.Conv2d, after: nn.Conv2d | None = None) -> torch.Tensor:
    """(P, O): the 3x3 ``conv`` (padding 1) at P cells, from its input's (N, C) ``rows`` and the cells' (P, 9)
    ``taps`` into them (:class:`Rings`; N for a tap off the map, which reads zero).

    ``after``, a 1x1 conv, makes this the conv of ``after(rows)``, computed on ``rows`` with the two convs'
    weights multiplied into one (:func:`gdc.convs.fold_pointwise`): where ``rows`` need no gradient (a frozen
    stem's features) training then scatters none back through the taps.
    """
    channels = rows.shape[1]
    padded = torch.cat((rows, rows.new_zeros(1, channels)))
    gathered = padded.index_select(0, taps.flatten()).view(len(taps), 9 * channels)
    weight, bias = conv.weight, conv.bias
    if after is not None:
        weight, bias = fold_pointwise(weight, bias, after, "zeros", inside=taps < len(rows))
    # Weights in the gathered rows' order: tap by tap, each tap's C channels.
    out = F.linear(gathered, weight.permute(0, 2, 3, 1).flatten(1))
    return out if bias is None else out + bias.to(out.dtype)


class _Bordered:
    """An (H, W) map bordered by one ring, (H + 2, W + 2), whose flat indices step to a cell's neighbours by
    constant ``shifts``: (9,) in nn.Conv2d's tap order."""

    def __init__(self, height: int, width: int, device) -> None:
        self.height, self.width = height, width
        self.shifts = DIRECTIONS.to(device) @ torch.tensor([width + 2, 1], device=device)
        self.device = device

    def indices(self, cells: torch.Tensor) -> torch.Tensor:
        """Bordered indices of flat ``cells`` of the map: (r + 1) * (W + 2) + c + 1."""
        return cells + 2 * torch.div(cells, self.width, rounding_mode="floor") + (self.width + 3)

    def flat(self, indices: torch.Tensor) -> torch.Tensor:
        """The map's flat cells of bordered ``indices`` inside it: r * W + c."""
        return indices - 2 * torch.div(indices, self.width + 2, rounding_mode="floor") - (self.width + 1)

    def grown(self, indices: torch.Tensor) -> torch.Tensor:
        """Bordered ``indices`` and the ring around them inside the map, ascending."""
        where = torch.zeros(self.height + 2, self.width + 2, dtype=torch.bool, device=self.device)
        where.view(-1)[indices[:, None] + self.shifts] = True
        where[[0, -1]] = False
        where[:, [0, -1]] = False
        return where.view(-1).nonzero().squeeze(1)

    def taps(self, indices: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
        """(P, 9) int64 rows of ``read`` (ascending bordered indices) under the 3x3 taps of each of the P bordered
        ``indices``; len(read) for a tap off the map. Every tap inside the map must be in ``read``."""
        rows = torch.full(((self.height + 2) * (self.width + 2),), len(read), dtype=torch.int64, device=self.device)
        rows[read] = torch.arange(len(read), device=self.device)
        return rows[indices[:, None] + self.shifts]
