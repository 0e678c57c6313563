"""The engine's options: one pydantic model shared by the CLI, the service and the worker.

Kept free of torch so the API process can validate requests without loading it.
"""
from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# The convs the head's context branch can use (Table I); names as gdc.convs knows them.
HeadConv = Literal["gdc", "normal", "dilated", "deformable", "uniform"]
HEAD_CONVS = get_args(HeadConv)
ClassWeights = Literal["inverse", "paper", "none"]


class SegmentOptions(BaseModel):
    """How to segment one image. Defaults follow the paper (Sec. V-A) where it speaks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conv: HeadConv = Field("gdc", description="conv of the head's context branch (Table I ablation)")
    # Adam reaches in 20 steps what the paper's 50 SGD steps reach (benchmarks/RESULTS.md, issue 15); 14 steps and
    # 8 samples score within 0.25 mIoU of 20 and 20 at 3 seeds in half the time (RESULTS, 9).
    steps: int = Field(14, ge=0, le=1000, description="optimiser steps on the scribbles (the paper: 50 SGD steps)")
    samples: int = Field(
        8, ge=1, le=1000, description="stochastic passes averaged at inference (the paper: 50; 8 scored as 20)"
    )
    # A refine's head starts trained, so it needs few steps and fewer samples. It stops once its strokes are fitted:
    # a median of 3-7 steps (benchmarks/RESULTS.md, 8); refine_steps bounds the strokes that contradict the head.
    refine_steps: int = Field(
        20, ge=0, le=1000,
        description="most optimiser steps of a refine: a round started from a previous one's head on the same image",
    )
    refine_stop_loss: float = Field(
        0.15, ge=0.0, le=10.0,
        description="a refine stops once its loss on the strokes (cross-entropy per labelled cell) is below this; 0: "
        "always refine_steps",
    )
    refine_samples: int = Field(6, ge=1, le=1000, description="stochastic passes averaged at inference in a refine")
    refine_lr: float = Field(0.003, gt=0.0, le=1.0, description="learning rate of a refine")
    sigma: float = Field(0.2, ge=0.0, le=1.0, description="Σ: offset spread as a fraction of the short side")
    optimiser: Literal["sgd", "adam"] = Field(
        "adam", description="optimiser of the head: Adam, or SGD with momentum as the paper (lr 0.01 there)"
    )
    lr: float = Field(0.003, gt=0.0, le=1.0, description="learning rate (Adam: 0.003 beat 0.002, 0.005 and 0.01)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    feature_stride: Literal[2, 4] = Field(
        4, description="train on a grid of 1/4 the input size (the stem's native one), or 1/2 as the paper"
    )
    width: int = Field(32, ge=4, le=256, description="channels of the head")
    superpixel_size: int = Field(
        120, ge=0, le=1_000_000, description="average SLIC superpixel area in pixels for scribble expansion; 0 turns it off"
    )
    superpixel_shrink: int = Field(
        2, ge=1, le=8,
        description="SLIC runs on the image shrunk by this factor per side (2: a quarter of the cost), its superpixels "
        "stretched back",
    )
    compactness: float = Field(10.0, gt=0.0, le=1000.0, description="SLIC compactness")
    superpixel_smoothing: float = Field(
        1.0, ge=0.0, le=10.0, description="σ in pixels of the blur before SLIC, so pixel noise does not fragment superpixels"
    )
    class_weights: ClassWeights = Field(
        "inverse", description="cross-entropy weights: inverse class frequency, the paper's Eq. 6 (n_c/N), or none"
    )
    edges: bool = Field(
        True,
        description="after sampling, relabel so class borders follow the image's edges (a contrast-sensitive Potts "
        "graph cut on the probabilities and a colour model, gdc.labelling); off: the argmax of the head's probabilities",
    )
    # 170: the best mean of icg-dev and GrabCut scribbles-1 over λ in 50..220, seed 0 (benchmarks/RESULTS.md).
    edge_strength: float = Field(
        170.0,
        ge=0.0,
        le=10_000.0,
        description="λ of the edge step: cost of a class border across flat colour, against -log p",
    )
    # 1 MP: past it the GDC's scattered reads leave the CPU's caches and time grows faster than pixels.
    max_pixels: int = Field(
        1_000_000, ge=10_000, le=100_000_000, description="larger images are segmented at this many pixels and upsampled"
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="head arithmetic: bfloat16 where the device has it natively (auto), or fixed"
    )
    # At most 2**53 - 1: torch takes it and a browser's number holds it exactly, so forms round-trip the bound.
    seed: int | None = Field(0, ge=0, le=2**53 - 1, description="seed for offsets and initialisation; None draws a fresh one")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, ...")
    weights: str = Field("efficientnet-lite0", description="stem weights: the packaged checkpoint or a torchvision mobilenet_v2 file")
