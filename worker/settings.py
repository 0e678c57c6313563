"""Settings the API and the workers share: Redis, the queue, job lifetimes, callbacks; and the worker's own.

Read from the environment (``GDC_*``, and ``REDIS_URL`` as is). The API's own settings
extend these in :class:`service.settings.Settings`.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gdc.threads import DEFAULT_THREADS

SecondsList = Annotated[list[int], NoDecode]
CommaList = Annotated[list[str], NoDecode]


def split_commas(value):
    """A comma-separated environment value as a list (values given as lists pass through)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class QueueSettings(BaseSettings):
    """How jobs are queued, kept and run. Every field is an environment variable ``GDC_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GDC_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "GDC_REDIS_URL", "redis_url"),
        description="Redis URL shared by the API and the workers; unset: `gdc serve` starts an embedded server",
    )
    redis_sentinels: CommaList = Field(
        [],
        description="Redis Sentinels as comma-separated `host:port`; set, the API and the workers ask them for the "
        "primary and follow a failover by themselves, and REDIS_URL is not used (docs/kubernetes.md: Sentinel)",
    )
    redis_sentinel_master: str = Field("gdc", description="the name the Sentinels monitor the primary under")
    redis_password: SecretStr | None = Field(
        None, description="password of the Redis primary and replica found through the Sentinels (`requirepass`)"
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="password of the Sentinels themselves, when they have one"
    )
    redis_replicas_to_wait: int = Field(
        0,
        ge=0,
        description="replicas that must hold a new job before POST /segment answers 202 (Redis `WAIT`); with "
        "Sentinel set it to 1, so a failover right after the answer cannot lose the job",
    )
    redis_timeout: float = Field(
        2.0, gt=0, description="seconds to wait for Redis to connect or answer; past it the API answers 503"
    )
    queue: str = Field("gdc", description="RQ queue the API enqueues to and workers listen on")
    device: str = Field(
        "cpu",
        description="torch device of a worker (`gdc worker --device` overrides it); `cuda:auto`: the least-loaded "
        "GPU no other worker leases (a lease in Redis renewed every heartbeat, freed on stop or after "
        "`GDC_HEARTBEAT_TTL` s without renewal); when all are leased it waits that long, then shares one",
    )
    worker_threads: int = Field(
        DEFAULT_THREADS,
        ge=1,
        description="torch CPU threads per worker; `gdc serve` starts cores / threads CPU workers (docs/docker.md: sizing)",
    )

    job_timeout: int = Field(600, gt=0, description="seconds a job may run before the worker stops it")
    job_retries: int = Field(2, ge=0, description="times a job is retried after its worker died or stopped mid-job")
    retry_backoff: SecondsList = Field(
        [10, 60], description="seconds before each retry, comma-separated; the last repeats"
    )
    finish_job_on_stop: bool = Field(
        False,
        description="on SIGTERM a worker finishes its running job before it exits (scale-down: give it a grace "
        "period above GDC_JOB_TIMEOUT); false: the job stops at the engine's next step and is retried elsewhere",
    )
    heartbeat_ttl: int = Field(
        30, ge=1, description="seconds without a worker heartbeat after which its running job counts as abandoned"
    )
    queued_ttl: int = Field(86_400, gt=0, description="seconds a job and its upload may wait in the queue")
    result_ttl: int = Field(3600, gt=0, description="seconds a finished job and its results are kept")
    failure_ttl: int = Field(86_400, gt=0, description="seconds a failed or canceled job is kept")
    progress_interval: float = Field(0.5, ge=0, description="least seconds between two progress writes of a job")
    recent_megabytes: int = Field(
        256,
        ge=0,
        description="memory a worker keeps its last jobs' decoded images and warm starts in, so that a refine of one "
        "of them reads neither from Redis nor decodes the image again; 0: none",
    )

    callback_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key signing callback bodies")
    callback_retries: int = Field(5, ge=0, description="times a failed callback delivery is retried")
    callback_backoff: SecondsList = Field([1, 5, 30, 120], description="seconds before each callback retry")
    callback_timeout: float = Field(10.0, gt=0, description="seconds to wait for a callback receiver")
    allow_private_callbacks: bool = Field(
        False, description="allow callback URLs on loopback or private addresses (tests, closed networks)"
    )

    _split_queue_lists = field_validator("retry_backoff", "callback_backoff", "redis_sentinels", mode="before")(split_commas)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, url):
        """``REDIS_URL=`` (as compose files write to clear it) means no URL, not a URL redis-py cannot parse."""
        return None if isinstance(url, str) and not url.strip() else url

    @field_validator("redis_sentinels")
    @classmethod
    def _host_and_port(cls, sentinels: list[str]) -> list[str]:
        for sentinel in sentinels:
            host, _, port = sentinel.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"a Sentinel is host:port, not {sentinel!r}")
        return sentinels

    @property
    def redis_configured(self) -> bool:
        """Whether a Redis is given (a URL or Sentinels); without one ``gdc serve`` starts its own."""
        return self.redis_url is not None or bool(self.redis_sentinels)

    @property
    def redis_target(self) -> str:
        """Where Redis is, for log lines: the URL, or the Sentinels and the primary's name."""
        if self.redis_sentinels:
            return f"the primary {self.redis_sentinel_master!r} of Sentinels {','.join(self.redis_sentinels)}"
        return str(self.redis_url)
