"""The lightweight per-image head of Sec. IV-A (Fig. 3), trained afresh on every image.

    stem features (40 ch) -> 1x1 fuse -> GDC module -> classifier
    GDC module:  3x3 conv (local)  +  context conv (GDC, or an ablation conv)
    classifier:  3x3 conv, ReLU, 1x1 conv to K classes
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cells import Rings, conv_at
from .convs import RANDOM_CONVS, create_conv, normalize_conv_name
from .options import HEAD_CONVS
from .stem import STEM_CHANNELS


def head_input(features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The frozen stem's features as the head reads them on every pass: channels-last, in its compute type.

    Done once per phase rather than per pass: autocast would cast them again at each pass, and the
    context branch's gather would read (and training copy) float32 rows only to round them the same way.
    """
    return features.to(dtype=dtype, memory_format=torch.channels_last)


class GDCHead(nn.Module):
    """Stem features to class logits, at the features' resolution.

    Arguments:
      classes: K, the number of output classes.
      conv: the context branch's conv, a name of :func:`gdc.convs.create_conv`.
      width: channels of every hidden layer.
      sigma: Σ of the random-offset convs.
      generator: drives the initialisation and the random offsets, so runs repeat
        whatever else uses torch's global random state.
    """

    def __init__(
        self,
        classes: int,
        *,
        conv: str = "gdc",
        width: int = 32,
        in_channels: int = STEM_CHANNELS,
        sigma: float = 0.2,
        generator: torch.Generator | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        conv = normalize_conv_name(conv)
        if conv not in HEAD_CONVS:
            raise ValueError(f"the head's context conv must be one of {', '.join(HEAD_CONVS)}, got {conv!r}")
        # Random taps land far outside the map (Σ·s cells); reading the edge there instead of
        # zeros keeps border pixels' features like the rest (+2 mIoU on the GrabCut scribbles).
        random_kwargs = dict(sigma=sigma, generator=generator, padding="border") if conv in RANDOM_CONVS else {}
        self.stochastic = conv in RANDOM_CONVS
        self.generator = generator
        self.fuse = nn.Conv2d(in_channels, width, 1, **factory)
        self.local = nn.Conv2d(width, width, 3, padding=1, **factory)
        self.context = create_conv(conv, width, width, **random_kwargs, **factory)
        self.classifier = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, **factory),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, classes, 1, **factory),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation (fan-in, ReLU gain), zero biases.

        The paper leaves initialisation open. PyTorch's default shrinks the signal at
        every layer, which leaves 50 SGD steps at lr 0.01 short of convergence (78.5
        against 80.1 mIoU on 20 icg-dev images); a deformable conv's offset predictor
        keeps its zero start.
        """
        for module in self.modules():
            weight = getattr(module, "weight", None)
            if weight is not None and weight.dim() == 4 and module is not getattr(self.context, "offset", None):
                nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=self.generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """(B, C, H, W) features to (samples * B, K, H, W) logits, one fresh draw of offsets per sample."""
        # Channels-last throughout: the GDC's output already is, and mixed layouts add slowly.
        fused = self.fuse(features.contiguous(memory_format=torch.channels_last))
        local = self.local(fused)
        if not self.stochastic:
            logits = self.classifier(local + self.context(fused))
            return logits.repeat(samples, 1, 1, 1) if samples > 1 else logits
        # The context branch reads the features through fuse's weights folded into its own (the same function),
        # and adds the local branch once for all its draws.
        return self.classifier(self.context(features, samples=samples, after=self.fuse, plus=local))

    def logits_at(self, features: torch.Tensor, rings: Rings) -> torch.Tensor:
        """(P, K) logits at the P cells of ``rings`` alone, of (1, C, H, W) channels-last ``features``
        (:func:`head_input`): :meth:`forward`'s there, for one draw of offsets at the inner ring.

        What a training step's loss reads, computed on the ring around its cells (gdc/cells.py): the
        GDC module at the cells and the ring, both its branches reading the features through fuse's
        weights folded into theirs, then the classifier at the cells.
        """
        height, width = features.shape[-2:]
        rows = features.permute(0, 2, 3, 1).reshape(height * width, -1)  # a view of channels-last features
        local = conv_at(rows, rings.inner_taps, self.local, after=self.fuse)
        if self.stochastic:
            context = self.context.rows_at(features, rings.inner, after=self.fuse)
        else:  # the ablations' convs, on the whole map
            context = self.context(self.fuse(features)).permute(0, 2, 3, 1).reshape(height * width, -1)[rings.inner]
        hidden, _, to_classes = self.classifier
        hidden = conv_at(local + context, rings.cell_taps, hidden).relu()
        return F.linear(hidden, to_classes.weight.flatten(1), to_classes.bias)
