"""Warm starts: what one :func:`gdc.engine.segment` call leaves for the next round of strokes.

A user refines a mask by adding strokes to the same image. The superpixels and the stem's
features depend on the image alone, and the head trained on the first strokes is a far
better start than a random one, so a refine reuses all three and trains on until the new
strokes are fitted (``SegmentOptions.refine_stop_loss``, at most ``refine_steps``) instead
of ``steps``. It goes on with the optimiser's state too: a fresh Adam's first steps move
every weight by the full learning rate, which undid part of what the head had learnt. Its
momentum is lower in a refine (``refine_momentum``), so that what the last round's strokes built
up does not carry the head past the new ones.

A :class:`WarmStart` is plain numpy arrays, so it travels as bytes (:meth:`to_bytes`) to
whichever worker runs the next round. Its size is bounded by the working size
(``max_pixels``): per working pixel, 40 feature channels at 1/16 of the pixels in float16
(5 bytes) and the superpixel ids (2 bytes, 4 past 65535 superpixels), plus the head's
~30k weights and the optimiser's state (2 values per weight for Adam): 2 MB for a 625x391
photo, at most about 7 MB at the 1 MP working size.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from .options import SegmentOptions, reused_options

_HEAD_PREFIX = "head."
_OPTIMISER_PREFIX = "optimiser/"


def fingerprint(image: np.ndarray, options: SegmentOptions) -> str:
    """A digest of the working-size image and the options its warm start depends on (``reused`` in the model)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([image.shape, options.model_dump(include=set(reused_options(type(options))))], sort_keys=True).encode())
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
      optimiser: the optimiser's per-weight state as ``"<weight name>/<field>"`` arrays
        (Adam's ``step``, ``exp_avg``, ``exp_avg_sq``; SGD's ``momentum_buffer``).
      optimiser_kind: the ``SegmentOptions.optimiser`` that state belongs to.
    """

    fingerprint: str
    classes: tuple[int, ...]
    features: np.ndarray
    segments: np.ndarray | None
    head: dict[str, np.ndarray]
    optimiser: dict[str, np.ndarray] = field(default_factory=dict)
    optimiser_kind: str = ""

    @classmethod
    def capture(
        cls,
        fingerprint: str,
        classes,
        features: torch.Tensor,
        segments,
        head: torch.nn.Module,
        optimiser: torch.optim.Optimizer,
        optimiser_kind: str,
    ) -> WarmStart:
        """Copy what a segmentation computed into plain arrays."""
        if segments is not None:
            segments = segments.astype(np.uint16 if segments.max() < 2**16 else np.uint32)
        return cls(
            fingerprint=fingerprint,
            classes=tuple(int(c) for c in classes),
            features=features[0].to(torch.float16).cpu().numpy(),
            segments=segments,
            head={name: value.detach().float().cpu().numpy() for name, value in head.state_dict().items()},
            optimiser={
                f"{name}/{key}": torch.as_tensor(value).detach().float().cpu().numpy()
                for name, weight in head.named_parameters()
                for key, value in optimiser.state.get(weight, {}).items()
            },
            optimiser_kind=optimiser_kind,
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
        fresh = head.state_dict()
        for name in self._per_class(head):
            state[name] = self._class_rows(state[name], fresh[name].clone(), classes)
        head.load_state_dict(state)

    def load_optimiser(self, optimiser: torch.optim.Optimizer, head: torch.nn.Module, classes, kind: str) -> None:
        """Give ``optimiser`` (of ``kind``, over ``head``'s weights) the state this one's optimiser ended with.

        Nothing is loaded for another kind of optimiser. Per-class rows follow the classes as
        in :meth:`load_head`: a new class's rows start from zero, as a fresh optimiser's do.
        """
        if kind != self.optimiser_kind or not self.optimiser:
            return
        per_class = self._per_class(head)
        stored: dict[str, dict[str, np.ndarray]] = {}
        for key, value in self.optimiser.items():
            name, _, entry = key.partition("/")
            stored.setdefault(name, {})[entry] = value
        for name, weight in head.named_parameters():
            state = {}
            for entry, value in stored.get(name, {}).items():
                value = torch.tensor(value)  # a copy: the optimiser updates its state in place
                if entry == "step":  # a CPU scalar, as the optimiser keeps it; a fused one keeps it beside the weight
                    value = value.to(weight.device) if optimiser.defaults.get("fused") else value
                else:
                    if name in per_class:
                        value = self._class_rows(value, torch.zeros(weight.shape), classes)
                    value = value.to(device=weight.device, dtype=weight.dtype)
                state[entry] = value
            if state:
                optimiser.state[weight] = state

    @staticmethod
    def _per_class(head: torch.nn.Module) -> tuple[str, str]:
        last = f"classifier.{len(head.classifier) - 1}."
        return last + "weight", last + "bias"

    def _class_rows(self, stored: torch.Tensor, rows: torch.Tensor, classes) -> torch.Tensor:
        """``rows`` (one per class of ``classes``) with each class this warm start knows taken from ``stored``."""
        for row, value in enumerate(classes):
            if int(value) in self.classes:
                rows[row] = stored[self.classes.index(int(value))]
        return rows

    def to_bytes(self) -> bytes:
        """The warm start as an ``.npz`` (no pickle).

        Uncompressed: zlib took 0.6-1 s per photo and saved only 30% (float16 features barely compress).
        """
        arrays = {_HEAD_PREFIX + name: value for name, value in self.head.items()}
        arrays |= {_OPTIMISER_PREFIX + name: value for name, value in self.optimiser.items()}
        if self.segments is not None:
            arrays["segments"] = self.segments
        buffer = io.BytesIO()
        np.savez(
            buffer,
            fingerprint=np.array(self.fingerprint),
            classes=np.array(self.classes, dtype=np.int64),
            features=self.features,
            optimiser_kind=np.array(self.optimiser_kind),
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
                    head=_prefixed(stored, _HEAD_PREFIX),
                    # Absent from warm starts stored before they kept it: the refine starts the optimiser afresh.
                    optimiser=_prefixed(stored, _OPTIMISER_PREFIX),
                    optimiser_kind=str(stored["optimiser_kind"]) if "optimiser_kind" in stored.files else "",
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"not a warm start: {error}") from None


def _prefixed(stored, prefix: str) -> dict[str, np.ndarray]:
    return {name.removeprefix(prefix): stored[name] for name in stored.files if name.startswith(prefix)}
