"""Warm starts: what one :func:`gdc.engine.segment` call leaves for the next round of strokes.

A user refines a mask by adding strokes to the same image. The superpixels and the stem's
features depend on the image alone, and the head trained on the first strokes is a far
better start than a random one, so a refine reuses all three and trains a few steps
(``SegmentOptions.refine_steps``) instead of ``steps``.

A :class:`WarmStart` is plain numpy arrays, so it travels as bytes (:meth:`to_bytes`) to
whichever worker runs the next round. Its size is bounded by the working size
(``max_pixels``): per working pixel, 40 feature channels at 1/16 of the pixels in float16
(5 bytes) and the superpixel ids (2 bytes, 4 past 65535 superpixels), plus the head's
~30k weights: 1.8 MB for a 625x391 photo, at most about 7 MB at the 1 MP working size.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from .options import SegmentOptions

# The options the stored parts depend on: another value for any of them means a cold start.
REUSED_WITH = (
    "conv",
    "width",
    "sigma",
    "feature_stride",
    "superpixel_size",
    "compactness",
    "superpixel_smoothing",
    "superpixel_shrink",
    "max_pixels",
    "weights",
)
_HEAD_PREFIX = "head."


def fingerprint(image: np.ndarray, options: SegmentOptions) -> str:
    """A digest of the working-size image and the options its warm start depends on."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([image.shape, options.model_dump(include=set(REUSED_WITH))], sort_keys=True).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class WarmStart:
    """The reusable parts of one segmentation.

    Attributes:
      fingerprint: :func:`fingerprint` of the working-size image and options they came from.
      classes: the scribbles' class values the head was trained on, in its output order.
      features: (C, h, w) float16 standardised stem features.
      segments: (H, W) uint16 or uint32 SLIC superpixel ids at the working size; None when
        superpixels were off.
      head: the trained head's state dict as float32 arrays.
    """

    fingerprint: str
    classes: tuple[int, ...]
    features: np.ndarray
    segments: np.ndarray | None
    head: dict[str, np.ndarray]

    @classmethod
    def capture(cls, fingerprint: str, classes, features: torch.Tensor, segments, head: torch.nn.Module) -> WarmStart:
        """Copy what a segmentation computed into plain arrays."""
        if segments is not None:
            segments = segments.astype(np.uint16 if segments.max() < 2**16 else np.uint32)
        return cls(
            fingerprint=fingerprint,
            classes=tuple(int(c) for c in classes),
            features=features[0].to(torch.float16).cpu().numpy(),
            segments=segments,
            head={name: value.detach().float().cpu().numpy() for name, value in head.state_dict().items()},
        )

    def feature_tensor(self, device: torch.device) -> torch.Tensor:
        """The features as the engine uses them: (1, C, h, w) float32 on ``device``."""
        return torch.from_numpy(self.features).to(device)[None].float()

    def load_head(self, head: torch.nn.Module, classes) -> None:
        """Load the trained weights into a fresh ``head`` for ``classes``.

        The classifier's output rows follow the class values: a class both rounds share
        keeps its trained row, a new class keeps its fresh initialisation, and a class no
        longer scribbled is dropped.
        """
        state = {name: torch.from_numpy(value) for name, value in self.head.items()}
        last = f"classifier.{len(head.classifier) - 1}."
        fresh = head.state_dict()
        for name in (last + "weight", last + "bias"):
            rows = fresh[name].clone()
            for row, value in enumerate(classes):
                if int(value) in self.classes:
                    rows[row] = state[name][self.classes.index(int(value))]
            state[name] = rows
        head.load_state_dict(state)

    def to_bytes(self) -> bytes:
        """The warm start as an ``.npz`` (no pickle).

        Uncompressed: zlib took 0.6-1 s per photo and saved only 30% (float16 features barely compress).
        """
        arrays = {_HEAD_PREFIX + name: value for name, value in self.head.items()}
        if self.segments is not None:
            arrays["segments"] = self.segments
        buffer = io.BytesIO()
        np.savez(
            buffer,
            fingerprint=np.array(self.fingerprint),
            classes=np.array(self.classes, dtype=np.int64),
            features=self.features,
            **arrays,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> WarmStart:
        """Read what :meth:`to_bytes` wrote.

        Raises:
          ValueError: ``data`` is not a warm start.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                return cls(
                    fingerprint=str(stored["fingerprint"]),
                    classes=tuple(int(c) for c in stored["classes"]),
                    features=stored["features"],
                    segments=stored["segments"] if "segments" in stored.files else None,
                    head={
                        name.removeprefix(_HEAD_PREFIX): stored[name]
                        for name in stored.files
                        if name.startswith(_HEAD_PREFIX)
                    },
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"not a warm start: {error}") from None
