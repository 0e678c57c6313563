"""The Redis connection the API and the workers share: timeouts, retries, Sentinel, and waiting for replicas.

A plain ``REDIS_URL``, or with ``GDC_REDIS_SENTINELS`` the primary the Sentinels name, followed
through a failover. :func:`replicate` makes a new job survive the primary's loss.
"""
from __future__ import annotations

from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel, SentinelManagedConnection

from .keys import Kind, key_for
from .settings import QueueSettings


def connect(settings: QueueSettings) -> Redis:
    """A Redis client that gives up after ``settings.redis_timeout`` s (then callers answer 503).

    With ``settings.redis_sentinels`` the client asks the Sentinels for the primary on every
    new connection, and drops its connections when the server it reaches is no longer the
    primary, so it follows a failover by itself. A refused or dropped connection is retried a
    few times within about a second, which rides over a Redis restart; a timeout is not
    retried, so no request hangs.
    """
    options = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": RedisRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3, (RedisConnectionError,)),
    }
    if not settings.redis_sentinels:
        return Redis.from_url(settings.redis_url, **options)
    sentinels = [(host, int(port)) for host, _, port in (item.rpartition(":") for item in settings.redis_sentinels)]
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={**options, "password": _secret(settings.redis_sentinel_password)},
        password=_secret(settings.redis_password),
        **options,
    )
    return sentinel.master_for(settings.redis_sentinel_master, connection_class=_SentinelConnection)


class _SentinelConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection, closed after a failed read as its plain connection is.

    ``SentinelManagedConnection.read_response`` defaults ``disconnect_on_error`` to False (redis-py
    8.1), so a read that timed out during a failover left its answer on the socket for the next
    command to read: /readyz got an EXPIRE's 1 where it asked for a set, and answered 500.
    """

    def read_response(self, *args, disconnect_on_error: bool = True, **kwargs):
        return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)


def _secret(value) -> str | None:
    return None if value is None else value.get_secret_value()


def replicate(connection: Redis, settings: QueueSettings, job_id: str) -> bool:
    """Wait until ``settings.redis_replicas_to_wait`` replicas hold the job just enqueued (Redis ``WAIT``).

    Redis replicates asynchronously: a job the primary acknowledged is lost when the primary
    dies before a replica has it and Sentinel promotes that replica. Waiting for a replica
    before answering 202 closes that gap. False when fewer confirmed within half of
    ``settings.redis_timeout`` (a replica down: the job stands, on the primary alone).
    """
    wanted = settings.redis_replicas_to_wait
    if wanted == 0:
        return True
    with connection.pipeline(transaction=False) as pipeline:
        # WAIT counts its own connection's writes, and the pool may hand out another connection
        # than the enqueueing one: so write once here (re-arm the upload's TTL) and WAIT behind
        # it. Replication keeps order, so a replica holding this write holds the job too.
        pipeline.expire(key_for(Kind.UPLOAD, job_id), settings.queued_ttl)
        pipeline.wait(wanted, int(settings.redis_timeout * 500))  # within the socket's timeout
        _, confirmed = pipeline.execute()
    return confirmed >= wanted
