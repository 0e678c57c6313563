"""Uploads and results in Redis, stored compactly under ``gdc:`` keys with a TTL; no torch.

A job's upload is the image file as sent plus its scribbles as a label PNG. Its result
holds, per field:

  mask           PNG, mode L: the label map in the scribbles' class values
  timings        JSON: the job's seconds per phase up to its mask
  probabilities  PNG, mode L, (K*H) x W: class ``classes[k]``'s probability x 255 in rows
                 k*H .. (k+1)*H-1 (uint8, so each value is within 1/510 of the float)
  uncertainty    PNG, mode L: normalised entropy x 255
  polygons       zlib-compressed JSON: per class, closed rings of [x, y] points (:func:`mask_polygons`)

The mask and timings are stored first (:func:`save_mask`), with the warm start, and a waiter is woken
through ``gdc:ready:<id>``; the other fields follow (:func:`encode_details`, :func:`save_result`)
before the job succeeds. A person waiting on the mask gets it without waiting for the rest: 35-50 ms
on a photo here, 2.3-3.3 s on a 12 MP one (whose probabilities are brought to full size then).

Size per job in Redis: the image file and scribble PNG, plus results of at most about
H*W*(K + 2) bytes before compression. The PNGs are :func:`gdc.imageio.encode_png`'s (each row
Up-filtered, zlib level 1): a third of the time of Pillow's at level 1, the same size within 4%
on the photos below. Measured at the defaults on an icg-dev photo (625x391) and on
scikit-image's coffee photo (600x400) with three or two rectangular strokes (3 steps, so noisier
probabilities, which compress worse):

  icg-dev 0108, K=2: mask 4 kB, probabilities 60 kB, uncertainty 42 kB, polygons 3 kB = 0.11 MB
  coffee, K=3: mask 5 kB, probabilities 407 kB, uncertainty 167 kB, polygons 3 kB = 0.58 MB
  coffee, K=2: 0.45 MB

so at most about 2.5 bytes per pixel for three classes; GDC_MAX_PIXELS and GDC_MAX_CLASSES bound
the worst case, GDC_RESULT_TTL how long it stays.

Beside the result, for as long, a job keeps its warm start (:class:`gdc.warm.WarmStart`
as ``.npz`` bytes) under ``gdc:warm:<id>``, so any worker can refine the job. It holds
float16 features at 1/16 of the working pixels and the superpixel ids, about 7 bytes per
working pixel, and the head's weights and optimiser state, about 0.35 MB (2.1 MB for a
625x391 photo; the working size is at most 1 MP, so ~7 MB).
"""
from __future__ import annotations

import json
import zlib

import numpy as np

from gdc.imageio import encode_png, grey_map, stack_probabilities

from .keys import Kind, key_for


def save_upload(redis, job_id: str, image: bytes, scribbles_png: bytes, ttl: int) -> None:
    """Store a job's image bytes and scribble PNG for ``ttl`` seconds (``redis`` may be a pipeline)."""
    key = key_for(Kind.UPLOAD, job_id)
    redis.hset(key, mapping={"image": image, "scribbles": scribbles_png})
    redis.expire(key, ttl)


def load_upload(redis, key: str) -> tuple[bytes, bytes] | None:
    """The image bytes and scribble PNG stored under ``key``, or None once expired or deleted."""
    image, scribbles = redis.hmget(key, ["image", "scribbles"])
    return None if image is None or scribbles is None else (image, scribbles)


def load_image(redis, job_id: str) -> bytes | None:
    """The image bytes of a job (kept beside its results to draw the overlay)."""
    return redis.hget(key_for(Kind.UPLOAD, job_id), "image")


def mask_polygons(labels: np.ndarray, classes) -> list[dict]:
    """Per class, the closed boundary rings of its region in pixel coordinates.

    Pixel (x, y) spans [x, x+1] x [y, y+1]; rings run between pixel centres at the
    0.5 level and include holes, so filling them with the even-odd rule gives the mask
    back. Rings are simplified to within half a pixel (Douglas-Peucker, GEOS's through shapely:
    skimage's approximate_polygon took 0.4 s of a 625x391 photo's two rings, GEOS 1 ms).
    """
    import shapely  # worker-only dependencies
    from skimage.measure import find_contours

    polygons = []
    for value in classes:
        region = np.pad(labels == value, 1).astype(np.uint8)
        rings = []
        for contour in find_contours(region, 0.5):
            simplified = shapely.simplify(shapely.LinearRing(contour), 0.5, preserve_topology=False)
            ring = shapely.get_coordinates(simplified)[:, ::-1] - 0.5  # (row, col) padded -> (x, y)
            rings.append(np.round(ring, 1).tolist())
        polygons.append({"class": int(value), "polygons": rings})
    return polygons


def mask_rle(labels: np.ndarray, classes) -> list[dict]:
    """Per class, COCO's uncompressed RLE: run lengths over the column-major mask, zeros first."""
    height, width = labels.shape
    encoded = []
    for value in classes:
        flat = (labels == value).ravel(order="F")
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate([[0], edges, [flat.size]]))
        if flat[0]:
            counts = np.concatenate([[0], counts])
        encoded.append({"class": int(value), "size": [height, width], "counts": counts.tolist()})
    return encoded


def encode_details(labels: np.ndarray, probabilities: np.ndarray, uncertainty: np.ndarray, classes) -> dict[str, bytes]:
    """The result's fields besides the mask, as the bytes stored under ``gdc:result:<id>``."""
    return {
        "probabilities": encode_png(stack_probabilities(probabilities)),
        "uncertainty": encode_png(grey_map(uncertainty)),
        "polygons": zlib.compress(json.dumps(mask_polygons(labels, classes), separators=(",", ":")).encode()),
    }


def save_mask(redis, job_id: str, mask: bytes, timings: dict[str, float], ttl: int) -> None:
    """Store a job's mask PNG and its timings so far for ``ttl`` seconds, and wake whoever waits on the mask
    (``redis`` may be a pipeline)."""
    save_result(redis, job_id, {"mask": mask, "timings": json.dumps(timings)}, ttl)
    ready = key_for(Kind.READY, job_id)
    redis.xadd(ready, {"mask": 1}, maxlen=1)
    redis.expire(ready, ttl)


def save_result(redis, job_id: str, fields: dict[str, bytes], ttl: int) -> None:
    """Store result fields of a job for ``ttl`` seconds (``redis`` may be a pipeline)."""
    key = key_for(Kind.RESULT, job_id)
    redis.hset(key, mapping=fields)
    redis.expire(key, ttl)


def load_result(redis, job_id: str, field: str) -> bytes | None:
    """One stored result field of a job, or None when it has none (not stored yet, expired)."""
    return redis.hget(key_for(Kind.RESULT, job_id), field)


def has_mask(redis, job_id: str) -> bool:
    """Whether the job's mask is stored: its labels are final, though its other fields may still be encoding."""
    return bool(redis.hexists(key_for(Kind.RESULT, job_id), "mask"))


def load_timings(redis, job_id: str) -> dict[str, float]:
    """The job's seconds per phase up to its mask; empty before it is stored."""
    stored = load_result(redis, job_id, "timings")
    return json.loads(stored) if stored else {}


def save_warm_start(redis, job_id: str, data: bytes, ttl: int) -> None:
    """Store what a refine of the job starts from for ``ttl`` seconds (``redis`` may be a pipeline)."""
    redis.set(key_for(Kind.WARM, job_id), data, ex=ttl)


def load_warm_start(redis, job_id: str) -> bytes | None:
    """The job's stored warm start, or None once expired or deleted."""
    return redis.get(key_for(Kind.WARM, job_id))


def has_warm_start(redis, job_id: str) -> bool:
    """Whether the job's warm start is still stored."""
    return bool(redis.exists(key_for(Kind.WARM, job_id)))


def delete_job_data(redis, job_id: str) -> None:
    """Drop a job's upload, results and warm start (canceled or deleted jobs)."""
    kinds = (Kind.UPLOAD, Kind.RESULT, Kind.READY, Kind.WARM)
    redis.delete(*(key_for(kind, job_id) for kind in kinds))
