"""Which device a worker takes: the one it is given, or for ``cuda:auto`` the next GPU in turn."""
import pytest
from redis import Redis

from worker.main import resolve_device


def test_auto_hands_out_the_gpus_in_turn(redis_url):
    redis = Redis.from_url(redis_url)
    devices = [resolve_device("cuda:auto", redis, "gdc", gpus=3) for _ in range(7)]
    assert devices == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    # Another queue's workers count their own turns.
    assert resolve_device("cuda:auto", redis, "other", gpus=3) == "cuda:0"


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_a_named_device_is_kept(redis_url, device):
    assert resolve_device(device, Redis.from_url(redis_url), "gdc", gpus=0) == device


def test_auto_without_a_gpu_is_an_error(redis_url):
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda:auto", Redis.from_url(redis_url), "gdc", gpus=0)
