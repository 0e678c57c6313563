"""Label maps as a COCO instances file: one category per class value, one RLE annotation per class in an image.

RLE, areas and boxes come from pycocotools (``mask.encode``, ``area``, ``toBbox``), so the
file reads back with ``pycocotools.coco.COCO`` exactly as it was written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gdc.errors import InputError
from gdc.imageio import read_labels


def read_class_names(path: Path) -> dict[int, str]:
    """Class names from a text file: line k (from 1) names class value k; blank lines leave a value unnamed."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InputError(f"cannot read the class names in {path}: {error}") from None
    if len(lines) > 255:
        raise InputError(f"{path} names {len(lines)} classes; label maps hold values 1..255")
    return {value: line.strip() for value, line in enumerate(lines, start=1) if line.strip()}


def annotations_of(labels: np.ndarray, image_id: int, first_id: int) -> list[dict]:
    """One annotation per class value in ``labels`` (0, unlabeled, is none), ids from ``first_id``."""
    from pycocotools import mask as coco_mask

    found = []
    for value in np.unique(labels):
        if value == 0:
            continue
        rle = coco_mask.encode(np.asfortranarray(labels == value, dtype=np.uint8))
        found.append(
            {
                "id": first_id + len(found),
                "image_id": image_id,
                "category_id": int(value),
                "segmentation": {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": float(coco_mask.area(rle)),
                "bbox": [float(x) for x in coco_mask.toBbox(rle)],
                "iscrowd": 0,
            }
        )
    return found


def coco_instances(label_maps: list[tuple[str, Path]], names: dict[int, str]) -> dict:
    """A COCO instances dict over (image file name, label map PNG) pairs.

    Category ids are the class values themselves, named from ``names`` (else ``class <value>``):
    every named value, and every value found in a label map.
    """
    images, annotations, values = [], [], set(names)
    for image_id, (file_name, path) in enumerate(label_maps, start=1):
        labels = read_labels(path)
        height, width = labels.shape
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        found = annotations_of(labels, image_id, len(annotations) + 1)
        annotations += found
        values.update(annotation["category_id"] for annotation in found)
    categories = [{"id": value, "name": names.get(value, f"class {value}")} for value in sorted(values)]
    return {"images": images, "annotations": annotations, "categories": categories}
