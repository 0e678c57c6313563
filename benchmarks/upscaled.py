"""Quality above the edge step's 1 MP: a data set's photos upscaled to phone-camera sizes, scored.

The data sets' photos are under a third of a megapixel, so no score reaches the path large photos
take (the engine and the edge step at 1 MP, then the step's band at full resolution). This scales
each photo (Lanczos), its scribbles and its ground truth (nearest) to ``--megapixels`` and scores
gdc's label map as ``gdc eval`` does. Upscaled photos have smooth edges, so the figure compares
versions of the large-photo path; it says little of how a real 12 MP photo's detail fares.
Run from the repository root:

    .venv/bin/python -m benchmarks.upscaled ../shared/data/grabcut --scribbles scribbles-1 --limit 12

Prints each photo's mIoU and edge-step seconds, then the mean; ``--json`` keeps them.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
from PIL import Image

from apps.evaluate import load_dataset, score
from gdc.engine import segment
from gdc.options import SegmentOptions


def upscaled(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize(size, resample))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a data set folder (images/, gt/, a scribbles folder)")
    parser.add_argument("--scribbles", default="scribbles", help="scribble folder name (default scribbles)")
    parser.add_argument("--megapixels", type=float, default=8.0, help="size to upscale each photo to (default 8)")
    parser.add_argument("--limit", type=int, default=12, help="the first N photos (default 12)")
    parser.add_argument("--json", help="write each photo's figures here")
    args = parser.parse_args()

    rows = []
    for index, sample in enumerate(load_dataset(args.data, args.scribbles)):
        if index == args.limit:
            break
        height, width = sample.truth.shape
        scale = math.sqrt(args.megapixels * 1e6 / (height * width))
        size = (round(width * scale), round(height * scale))
        result = segment(
            upscaled(sample.image, size, Image.Resampling.LANCZOS),
            upscaled(sample.scribbles, size, Image.Resampling.NEAREST),
            SegmentOptions(seed=0),
        )
        # Scribble value k+1 is class k, as the ground truth numbers them (apps.evaluate).
        miou, _ = score((result.labels - 1).astype(np.uint8), upscaled(sample.truth, size, Image.Resampling.NEAREST))
        rows.append(dict(name=sample.name, miou=miou, edges=result.timings["edges"]))
        print(f"{sample.name}: mIoU {100 * miou:.2f}, edges {result.timings['edges']:.2f} s", flush=True)
    print(f"{len(rows)} photos at {args.megapixels:g} MP: mean mIoU {100 * np.mean([r['miou'] for r in rows]):.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
