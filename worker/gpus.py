"""Which GPU a ``cuda:auto`` worker takes: a lease per GPU in Redis, so each worker owns one.

A worker claims a free GPU with ``SET NX`` on that GPU's lease key, with a TTL that its
pulse thread renews (:meth:`GpuLease.renew`) and a clean stop deletes
(:meth:`GpuLease.release`). A worker that is killed stops renewing, and its GPU is free
again once the TTL runs out. So restarts and rescaling (4 workers, then 2, then 4) end
with one worker per GPU, which a counter handing out GPUs in turn could not promise.

GPUs are named by their UUID, not their index: containers and hosts sharing one Redis
each number their GPUs from 0, but a UUID names one physical GPU everywhere.

Free GPUs are taken least-loaded first. When every GPU is leased, a starting worker waits
up to ``wait`` seconds for one to be freed (a worker killed just before, whose lease is
running out), then shares the least-loaded GPU: it joins that GPU's sharers, a sorted set
of worker names scored by when their claim runs out, and says so in the log. A sharer
whose GPU's lease has lapsed takes the lease over at its next renewal.

Torch-free: the caller passes the UUIDs of the GPUs it sees, in index order.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from .keys import Kind, key_for

log = logging.getLogger(__name__)
AUTO_GPU = "cuda:auto"
POLL_SECONDS = 1.0  # how often a waiting worker looks for a freed GPU

# Renew the lease if it is ours, take it if it lapsed; 1 when we hold it afterwards.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""
# Delete the lease only if it is still ours: one that lapsed may be another worker's by now.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def gpu_loads(redis: Redis, gpus: Sequence[str]) -> list[int]:
    """Workers on each GPU now: its lease holder, if any, plus its sharers whose claim has not run out."""
    now_ms = time.time() * 1000
    pipe = redis.pipeline()
    for gpu in gpus:
        pipe.exists(key_for(Kind.GPU_LEASE, gpu))
        pipe.zremrangebyscore(key_for(Kind.GPU_SHARERS, gpu), "-inf", now_ms)  # sharers killed without releasing
        pipe.zcard(key_for(Kind.GPU_SHARERS, gpu))
    answers = pipe.execute()
    return [answers[3 * i] + answers[3 * i + 2] for i in range(len(gpus))]


@dataclass
class GpuLease:
    """Worker ``owner``'s claim on the GPU of UUID ``gpu``, index ``index``: exclusive (it holds the lease) or shared."""

    redis: Redis
    gpu: str
    index: int
    owner: str
    ttl: float
    exclusive: bool

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    def renew(self) -> None:
        """Extend the claim by ``ttl``; a sharer takes the lease over when its holder's has lapsed."""
        lease = key_for(Kind.GPU_LEASE, self.gpu)
        held = bool(self.redis.eval(_RENEW, 1, lease, self.owner, int(self.ttl * 1000)))
        if held and not self.exclusive:
            self.redis.zrem(key_for(Kind.GPU_SHARERS, self.gpu), self.owner)
            log.info("%s: the lease of %s lapsed; this worker holds it now", self.owner, self.device)
        elif not held:
            if self.exclusive:  # renewals stalled past the TTL (Redis away) and another worker took it meanwhile
                log.warning("%s: another worker took the lease of %s; sharing it", self.owner, self.device)
            self._join_sharers()
        self.exclusive = held

    def release(self) -> None:
        """Give the GPU back (a clean stop), so the next worker to start takes it at once."""
        if self.exclusive:
            self.redis.eval(_RELEASE, 1, key_for(Kind.GPU_LEASE, self.gpu), self.owner)
        else:
            self.redis.zrem(key_for(Kind.GPU_SHARERS, self.gpu), self.owner)

    def _join_sharers(self) -> None:
        key = key_for(Kind.GPU_SHARERS, self.gpu)
        pipe = self.redis.pipeline()
        pipe.zadd(key, {self.owner: (time.time() + self.ttl) * 1000})
        pipe.pexpire(key, int(self.ttl * 1000))
        pipe.execute()


def claim_gpu(redis: Redis, gpus: Sequence[str], owner: str, *, ttl: float, wait: float) -> GpuLease:
    """Worker ``owner``'s lease on a GPU of its own, or on a shared one when all ``gpus`` stay leased ``wait`` s."""
    if not gpus:
        raise RuntimeError("no CUDA device is visible")
    deadline = time.monotonic() + wait
    while True:
        loads = gpu_loads(redis, gpus)
        # Least-loaded first: a GPU whose holder's lease lapsed may still have sharers on it.
        for index in sorted(range(len(gpus)), key=lambda i: (loads[i], i)):
            if redis.set(key_for(Kind.GPU_LEASE, gpus[index]), owner, nx=True, px=int(ttl * 1000)):
                return GpuLease(redis, gpus[index], index, owner, ttl, exclusive=True)
        if time.monotonic() >= deadline:
            break
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    index = min(range(len(gpus)), key=lambda i: (loads[i], i))
    lease = GpuLease(redis, gpus[index], index, owner, ttl, exclusive=False)
    lease._join_sharers()
    log.warning(
        "%s: all %d GPU(s) are leased; sharing cuda:%d with %d other worker(s)", owner, len(gpus), index, loads[index]
    )
    return lease
