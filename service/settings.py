"""The service's settings: one class read from the environment (``GDC_*``, and ``REDIS_URL`` as is).

Shared by the API, the workers and ``gdc serve``. ``python -m service.settings`` prints
the Markdown table kept in docs/settings.md (a test checks the two agree).
"""
from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]
SecondsList = Annotated[list[int], NoDecode]


class Settings(BaseSettings):
    """How the service runs. Every field is an environment variable ``GDC_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GDC_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "GDC_REDIS_URL", "redis_url"),
        description="Redis URL shared by the API and the workers; unset: `gdc serve` starts an embedded server",
    )
    redis_timeout: float = Field(
        2.0, gt=0, description="seconds to wait for Redis to connect or answer; past it the API answers 503"
    )
    queue: str = Field("gdc", description="RQ queue the API enqueues to and workers listen on")
    device: str = Field(
        "cpu",
        description="torch device of a worker (`gdc worker --device` overrides it); `cuda:auto` gives each new "
        "worker the next GPU in turn",
    )
    worker_threads: int = Field(
        0, ge=0, description="torch CPU threads per worker; 0: torch's default (all cores), 1 when workers share cores"
    )

    max_upload_bytes: int = Field(64 * 2**20, gt=0, description="largest request body in bytes (larger: 413)")
    max_pixels: int = Field(
        50_000_000,
        gt=0,
        description="most pixels an image may have, checked before decoding (a 24 MP photo fits; the engine "
        "segments at its own working size and returns full-size results)",
    )
    max_classes: int = Field(16, ge=2, le=255, description="most scribble classes in one request")
    max_steps: int = Field(500, ge=0, description="most SGD steps a request may ask for (the engine caps it too)")
    max_samples: int = Field(
        200, ge=1, description="most stochastic samples a request may ask for (the engine caps it too)"
    )

    job_timeout: int = Field(600, gt=0, description="seconds a job may run before the worker stops it")
    job_retries: int = Field(2, ge=0, description="times a job is retried after its worker died or stopped mid-job")
    retry_backoff: SecondsList = Field(
        [10, 60], description="seconds before each retry, comma-separated; the last repeats"
    )
    heartbeat_ttl: int = Field(
        30, ge=1, description="seconds without a worker heartbeat after which its running job counts as abandoned"
    )
    queued_ttl: int = Field(86_400, gt=0, description="seconds a job and its upload may wait in the queue")
    result_ttl: int = Field(3600, gt=0, description="seconds a finished job and its results are kept")
    failure_ttl: int = Field(86_400, gt=0, description="seconds a failed or canceled job is kept")
    progress_interval: float = Field(0.5, ge=0, description="least seconds between two progress writes of a job")

    cors_origins: CommaList = Field([], description="origins allowed to call the API from a browser, comma-separated")
    api_keys: CommaList = Field([], description="accepted `X-API-Key` values, comma-separated; empty: no key needed")

    callback_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key signing callback bodies")
    callback_retries: int = Field(5, ge=0, description="times a failed callback delivery is retried")
    callback_backoff: SecondsList = Field([1, 5, 30, 120], description="seconds before each callback retry")
    callback_timeout: float = Field(10.0, gt=0, description="seconds to wait for a callback receiver")
    allow_private_callbacks: bool = Field(
        False, description="allow callback URLs on loopback or private addresses (tests, closed networks)"
    )

    @field_validator("cors_origins", "api_keys", "retry_backoff", "callback_backoff", mode="before")
    @classmethod
    def _split_commas(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


def settings_table() -> str:
    """The settings as a Markdown table: variable, default, meaning."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        variable = f"`GDC_{name.upper()}`"
        if name == "redis_url":
            variable = "`REDIS_URL` or `GDC_REDIS_URL`"
        default = field.default
        if isinstance(default, list):
            default = ",".join(str(item) for item in default)
        shown = "(unset)" if default in (None, "") else f"`{default}`"
        rows.append(f"| {variable} | {shown} | {field.description} |")
    return (
        "# Service settings\n\nEnvironment variables read by the API, the workers and `gdc serve`.\n"
        "Generated by `python -m service.settings > docs/settings.md`; do not edit by hand.\n\n"
        + "\n".join(rows)
        + "\n"
    )


if __name__ == "__main__":
    print(settings_table(), end="")
