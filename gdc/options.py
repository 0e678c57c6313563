"""The engine's options: one pydantic model, and the one list every door derives from.

Each field says, beside its default, bounds and description, whether a request to a gdc server
may set it (``request``; the worker decides the rest: device, weights, ...) and whether a warm
start depends on it (``reused``: a refine under another value starts cold). From the model come
the API's form and ``GET /options`` (service/schemas.py), every command's flags
(gdc/arguments.py), ``gdc batch``'s check of a server, and the warm start's fingerprint
(gdc/warm.py). A new option is a field here and the step that uses it.

Kept free of torch so the API process can validate requests without loading it.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# The convs the head's context branch can use (Table I); names as gdc.convs knows them.
HeadConv = Literal["gdc", "normal", "dilated", "deformable", "uniform"]
HEAD_CONVS = get_args(HeadConv)
ClassWeights = Literal["inverse", "paper", "none"]


def option(
    default: Any, description: str, *, request: bool = False, reused: bool = False, refines: str | None = None,
    **bounds: Any,
) -> Any:
    """A :class:`SegmentOptions` field.

    Arguments:
      description: one line; the API, ``GET /options``, the web page and ``--help`` show it.
      request: a request to a gdc server may set it.
      reused: a warm start holds what was computed with it, so a refine reuses one only under the same value.
      refines: the option this one replaces in a refine (``refine_steps`` refines ``steps``), so that a refine
        runs :meth:`SegmentOptions.for_refine` and every cap on the one holds for the other.
      bounds: pydantic's constraints (``ge``, ``le``, ...), which every door enforces.
    """
    marks = {"request": request, "reused": reused, "refines": refines}
    return Field(default, description=description, json_schema_extra=marks, **bounds)


def _marked(model: type[BaseModel], mark: str) -> tuple[str, ...]:
    return tuple(name for name, field in model.model_fields.items() if (field.json_schema_extra or {}).get(mark))


def request_options(model: type[SegmentOptions] | None = None) -> tuple[str, ...]:
    """The options a request to a gdc server may set, in the model's order."""
    return _marked(model or SegmentOptions, "request")


def reused_options(model: type[SegmentOptions] | None = None) -> tuple[str, ...]:
    """The options a warm start depends on: another value for any of them means a cold start."""
    return _marked(model or SegmentOptions, "reused")


def refine_pairs(model: type[SegmentOptions] | None = None) -> dict[str, str]:
    """Each refine option and the option it replaces in a refine: ``{"refine_steps": "steps", ...}``."""
    fields = (model or SegmentOptions).model_fields
    return {name: fields[name].json_schema_extra["refines"] for name in _marked(model or SegmentOptions, "refines")}


def unknown_names(given: Iterable[str], known: Iterable[str], what: str = "field", *, listed: bool = True) -> str | None:
    """A sentence naming each of ``given`` not in ``known``, with the closest known name (and, ``listed``, all
    known ones); None when all are known."""
    known = list(known)
    unknown = [name for name in given if name not in known]
    if not unknown:
        return None
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    sentence = f"unknown {what}{'s' if len(unknown) > 1 else ''} " + ", ".join(parts)
    return sentence + (f"; known: {', '.join(known)}" if listed else "")


class RefusesUnknown(BaseModel):
    """A model that refuses unknown fields with a message naming each and the closest known one."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown(cls, values: Any) -> Any:
        if isinstance(values, dict) and (problem := unknown_names(values, cls.model_fields)):
            raise PydanticCustomError("unknown_field", problem)
        return values


class SegmentOptions(RefusesUnknown):
    """How to segment one image. Defaults follow the paper (Sec. V-A) where it speaks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conv: HeadConv = option("gdc", "conv of the head's context branch (Table I ablation)", request=True, reused=True)
    # Adam reaches in 20 steps what the paper's 50 SGD steps reach. A step on a drawn batch of cells (train_cells)
    # costs under a tenth of one on the whole grid; 20 such steps score as 14 on the whole grid did (icg-dev −0.02,
    # GrabCut +0.15 and +0.14 at 3 seeds in float32), 14 scored 0.1-0.2 below
    # (benchmarks/RESULTS.md, 1. Quality of a cold job).
    steps: int = option(20, "optimiser steps on the scribbles (the paper: 50 SGD steps)", request=True, ge=0, le=1000)
    samples: int = option(
        8, "stochastic passes averaged at inference (the paper: 50; 8 scored as 20)", request=True, ge=1, le=1000
    )
    # On icg-dev (3 seeds, float32) 256 cells a step for 20 steps scored 87.83, 384 for 14 87.42, 192 for 28 87.51 and
    # 128 for 30 87.65, all at 7.4-8.6 GFLOP a job, with independent draws then
    # (benchmarks/RESULTS.md, 1. Quality of a cold job).
    train_cells: int = option(
        256, "cells each optimiser step trains on, drawn from the labelled ones in proportion to their class-weighted "
        "share of the loss; 0, or labelled cells whose ring is no larger than that many apart: all of them",
        ge=0, le=1_000_000,
    )
    # A refine's head starts trained, so it needs few steps and fewer samples. It stops once its strokes are fitted:
    # a median of 1-3 steps on the data sets' strokes, 5-7 on the web page's painted ones
    # (benchmarks/RESULTS.md, 4. Refining); refine_steps bounds the strokes that contradict the head.
    stop_loss: float = option(
        0.0, "training stops once the loss on the strokes (cross-entropy per labelled cell) is below this; 0: always "
        "steps", ge=0.0, le=10.0,
    )
    refine_steps: int = option(
        20, "most optimiser steps of a refine: a round started from a previous one's head on the same image",
        request=True, refines="steps", ge=0, le=1000,
    )
    refine_stop_loss: float = option(
        0.12, "a refine stops once its loss on the strokes (cross-entropy per labelled cell) is below this; 0: always "
        "refine_steps",
        request=True, refines="stop_loss", ge=0.0, le=10.0,
    )
    # 4 scored as 6 at 3 seeds on GrabCut and icg-dev, a third less of the sample phase
    # (benchmarks/RESULTS.md, 4. Refining).
    refine_samples: int = option(
        4, "stochastic passes averaged at inference in a refine", request=True, refines="samples", ge=1, le=1000
    )
    refine_lr: float = option(0.003, "learning rate of a refine", refines="lr", gt=0.0, le=1.0)
    # The optimiser's state goes on from the previous round, momentum included: at 0.9 it carries a refine past the
    # new strokes' fit and back again. At 0.5 a refine fits them in half the steps, which affords a lower stop
    # (0.12, from 0.15) and scores within 0.3 of 20 steps and 20 samples before issue 26
    # (benchmarks/RESULTS.md, 4. Refining).
    refine_momentum: float = option(
        0.5, "momentum of a refine (Adam's β1, SGD's momentum); a round from scratch uses momentum",
        refines="momentum", ge=0.0, lt=1.0,
    )
    sigma: float = option(
        0.2, "Σ: offset spread as a fraction of the short side", request=True, reused=True, ge=0.0, le=1.0
    )
    optimiser: Literal["sgd", "adam"] = option(
        "adam", "optimiser of the head: Adam, or SGD with momentum as the paper (lr 0.01 there)"
    )
    lr: float = option(0.003, "learning rate (Adam: 0.003 beat 0.002, 0.005 and 0.01)", gt=0.0, le=1.0)
    momentum: float = option(0.9, "momentum: SGD's, or Adam's β1 (the decay of its mean gradient)", ge=0.0, lt=1.0)
    feature_stride: Literal[2, 4] = option(
        4, "train on a grid of 1/4 the input size (the stem's native one), or 1/2 as the paper", reused=True
    )
    width: int = option(32, "channels of the head", reused=True, ge=4, le=256)
    superpixel_size: int = option(
        120, "average SLIC superpixel area in pixels for scribble expansion; 0 turns it off",
        request=True, reused=True, ge=0, le=1_000_000,
    )
    superpixel_shrink: int = option(
        2, "SLIC runs on the image shrunk by this factor per side (2: a quarter of the cost), its superpixels stretched "
        "back",
        reused=True, ge=1, le=8,
    )
    compactness: float = option(10.0, "SLIC compactness", reused=True, gt=0.0, le=1000.0)
    superpixel_smoothing: float = option(
        1.0, "σ in pixels of the blur before SLIC, so pixel noise does not fragment superpixels",
        reused=True, ge=0.0, le=10.0,
    )
    class_weights: ClassWeights = option(
        "inverse", "cross-entropy weights: inverse class frequency, the paper's Eq. 6 (n_c/N), or none"
    )
    edges: bool = option(
        True,
        "after sampling, relabel so class borders follow the image's edges (a contrast-sensitive Potts graph cut on "
        "the probabilities and a colour model, gdc.labelling); off: the argmax of the head's probabilities",
        request=True,
    )
    # 170: the best mean of icg-dev and GrabCut scribbles-1 over λ in 70..220, seed 0
    # (benchmarks/RESULTS.md, 1. Quality of a cold job).
    edge_strength: float = option(
        170.0, "λ of the edge step: cost of a class border across flat colour, against -log p",
        request=True, ge=0.0, le=10_000.0,
    )
    # 1 MP: past it the GDC's scattered reads leave the CPU's caches and time grows faster than pixels.
    max_pixels: int = option(
        1_000_000, "larger images are segmented at this many pixels and upsampled", reused=True, ge=10_000, le=100_000_000
    )
    precision: Literal["auto", "float32", "bfloat16"] = option(
        "auto", "head arithmetic: bfloat16 where the device has it natively (auto), or fixed"
    )
    # At most 2**53 - 1: torch takes it and a browser's number holds it exactly, so forms round-trip the bound.
    seed: int | None = option(
        0, "seed for offsets and initialisation; None draws a fresh one", request=True, ge=0, le=2**53 - 1
    )
    device: str = option("cpu", "torch device: cpu, cuda, cuda:1, ...")
    weights: str = option(
        "efficientnet-lite0", "stem weights: the packaged checkpoint or a torchvision mobilenet_v2 file", reused=True
    )

    def for_refine(self) -> SegmentOptions:
        """These options as a refine runs: each option replaced by the one that refines it (``steps`` by
        ``refine_steps``, ``lr`` by ``refine_lr``, ...; :func:`refine_pairs`)."""
        return self.model_copy(update={plain: getattr(self, refine) for refine, plain in refine_pairs(type(self)).items()})
