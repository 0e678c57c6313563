"""Where Redis is (a URL, or Sentinels) and how many replicas must hold a new job before it is accepted."""
import subprocess
import sys
import time

import pytest
from pydantic import ValidationError
from redis import Redis

from benchmarks.tiny import tiny_upload
from service.settings import Settings
from tests.conftest import REPO, process_env
from worker.connection import connect, replicate


def test_sentinels_are_read_as_host_port_pairs():
    settings = Settings(redis_sentinels="10.0.0.1:26379, sentinel-2:26379")
    assert settings.redis_sentinels == ["10.0.0.1:26379", "sentinel-2:26379"]
    assert settings.redis_configured and "Sentinels 10.0.0.1:26379,sentinel-2:26379" in settings.redis_target


def test_a_sentinel_without_a_port_is_refused_by_name():
    with pytest.raises(ValidationError, match="a Sentinel is host:port, not 'sentinel-1'"):
        Settings(redis_sentinels="sentinel-1")


@pytest.mark.parametrize("redis_url", [None, ""])  # REDIS_URL= is how a compose file clears it
def test_a_worker_without_redis_or_sentinels_says_what_to_give(redis_url):
    command = [sys.executable, "-m", "apps.cli", "worker", "--burst"]
    env = process_env() | ({} if redis_url is None else {"REDIS_URL": redis_url})
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "give --redis URL or --redis-sentinels, or set REDIS_URL" in done.stderr


def test_a_sentinel_client_asks_the_sentinels_for_the_primary():
    client = connect(Settings(redis_sentinels="127.0.0.1:1", redis_sentinel_master="gdc", redis_timeout=0.5))
    assert client.connection_pool.service_name == "gdc"
    with pytest.raises(Exception, match="No master found for 'gdc'"):  # nobody answers on port 1
        client.ping()


def test_without_a_replica_the_job_is_accepted_on_the_primary_alone(make_client, redis_url):
    client = make_client(redis_replicas_to_wait=1, redis_timeout=1)
    started = time.monotonic()
    answer = client.post("/segment", files=tiny_upload(), data={"steps": 2})
    assert answer.status_code == 202, answer.text  # WAIT found no replica within half the timeout
    assert time.monotonic() - started < 3
    assert not replicate(Redis.from_url(redis_url), Settings(redis_url=redis_url, redis_replicas_to_wait=1, redis_timeout=0.2), answer.json()["id"])
    assert replicate(Redis.from_url(redis_url), Settings(redis_url=redis_url), answer.json()["id"])  # 0 replicas wanted: no WAIT
