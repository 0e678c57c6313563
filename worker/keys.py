"""Our own Redis keys, all under ``gdc:`` and all named here (RQ keeps its own under ``rq:``)."""
from __future__ import annotations

from enum import Enum

PREFIX = "gdc"


class Kind(str, Enum):
    """What a key holds; each is written with a TTL."""

    UPLOAD = "upload"  # hash: the image bytes and the scribbles PNG of a job
    RESULT = "result"  # hash: mask and timings, then probabilities, uncertainty, polygons of a finished job
    READY = "ready"  # stream: one entry once the job's mask is stored, which wakes requests waiting on it
    WARM = "warm"  # bytes: a finished job's warm start (superpixels, features, head) for refining it
    CANCEL = "cancel"  # flag: the job was canceled by request
    IDEMPOTENCY = "idempotency"  # JSON: job id and request digest behind an Idempotency-Key
    TOOL_TASK = "tool-task"  # string: the last job gdc ran for an annotation tool's task, which the next one refines
    NOTIFIED = "notified"  # flag: the job's callback delivery has been enqueued once
    SWEEP = "sweep"  # lock, per queue: one sweep for abandoned jobs at a time
    STRANDED = "stranded"  # float: when a sweep first saw the job taken by a worker but not started
    GPU_LEASE = "gpu-lease"  # string, per GPU (by UUID): the `cuda:auto` worker that owns it
    GPU_SHARERS = "gpu-sharers"  # sorted set, per GPU: workers sharing it, scored by when their claim ends (ms)
    METRICS = "metrics"  # hash, per queue: what /metrics counts across processes (worker.metrics); no TTL


def key_for(kind: Kind, name: str) -> str:
    """The Redis key of ``kind`` for a job id (a digest, a queue for SWEEP, a GPU's UUID)."""
    return f"{PREFIX}:{Kind(kind).value}:{name}"
