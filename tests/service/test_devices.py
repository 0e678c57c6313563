"""Which device a worker takes: the one it is given, or for ``cuda:auto`` a GPU of its own, leased in Redis.

GPUs are simulated by their UUIDs; the leases live in the real embedded server.
"""
import logging
import subprocess
import sys
import threading
import time

import pytest
import torch
from redis import Redis

from tests.conftest import REPO, process_env
from worker.gpus import claim_gpu, gpu_loads
from worker.keys import Kind, key_for
from worker.main import SegmentWorker, worker_device

TTL = 1.0  # seconds: short, so that killed workers' leases lapse within a test


def fake_gpus(count: int) -> list[str]:
    return [f"GPU-{index:08x}-0000-0000-0000-000000000000" for index in range(count)]


@pytest.fixture
def redis(redis_url):
    connection = Redis.from_url(redis_url)
    yield connection
    connection.close()


def start(redis, gpus, name, *, wait=0.0, ttl=TTL):
    return claim_gpu(redis, gpus, name, ttl=ttl, wait=wait)


def devices(leases) -> list[str]:
    return sorted(lease.device for lease in leases)


def test_each_worker_owns_a_gpu(redis):
    gpus = fake_gpus(4)
    leases = [start(redis, gpus, f"w{n}") for n in range(4)]
    assert devices(leases) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert all(lease.exclusive for lease in leases)
    assert gpu_loads(redis, gpus) == [1, 1, 1, 1]


def test_workers_starting_at_once_never_share_while_a_gpu_is_free(redis):
    gpus = fake_gpus(8)
    barrier = threading.Barrier(8)
    leases = []

    def worker(name: str) -> None:
        barrier.wait()
        leases.append(start(redis, gpus, name))

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert devices(leases) == [f"cuda:{n}" for n in range(8)]
    assert all(lease.exclusive for lease in leases)


def test_a_restart_puts_every_worker_on_its_own_gpu_again(redis):
    gpus = fake_gpus(4)
    for round_ in range(3):  # a counter in turn would drift here: 4 claims per round on 4 GPUs only by luck
        leases = [start(redis, gpus, f"round{round_}-w{n}") for n in range(4)]
        assert devices(leases) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
        for lease in leases:
            lease.release()  # a clean stop
    assert gpu_loads(redis, gpus) == [0, 0, 0, 0]


def test_scaling_4_to_2_to_4_fills_the_freed_gpus(redis):
    gpus = fake_gpus(4)
    leases = [start(redis, gpus, f"w{n}") for n in range(4)]
    stopped = [lease for lease in leases if lease.device in ("cuda:1", "cuda:3")]
    for lease in stopped:
        lease.release()
    assert gpu_loads(redis, gpus) == [1, 0, 1, 0]
    new = [start(redis, gpus, f"new{n}") for n in range(2)]
    assert devices(new) == ["cuda:1", "cuda:3"]
    assert all(lease.exclusive for lease in new)
    assert gpu_loads(redis, gpus) == [1, 1, 1, 1]


def test_a_killed_workers_gpu_is_free_once_its_lease_lapses(redis):
    gpus = fake_gpus(2)
    kept = start(redis, gpus, "kept", ttl=60)  # alive throughout: as if renewed
    killed = start(redis, gpus, "killed")  # never renews nor releases, as if SIGKILLed
    replacement = start(redis, gpus, "replacement", wait=3 * TTL)  # waits for the lapse rather than share
    assert replacement.exclusive
    assert replacement.device == killed.device != kept.device


def test_a_renewed_lease_outlives_its_ttl(redis):
    gpus = fake_gpus(1)
    lease = start(redis, gpus, "alive")
    for _ in range(5):
        time.sleep(TTL / 3)
        lease.renew()
    assert lease.exclusive
    assert redis.get(key_for(Kind.GPU_LEASE, gpus[0])) == b"alive"
    assert not start(redis, gpus, "late").exclusive


def test_when_every_gpu_is_leased_workers_share_the_least_loaded_and_say_so(redis, caplog):
    gpus = fake_gpus(2)
    owners = [start(redis, gpus, f"w{n}") for n in range(2)]
    with caplog.at_level(logging.WARNING, logger="worker.gpus"):
        third = start(redis, gpus, "third")
    assert not third.exclusive
    assert "all 2 GPU(s) are leased; sharing cuda:0 with 1 other worker(s)" in caplog.text
    fourth = start(redis, gpus, "fourth")
    assert fourth.device == "cuda:1"  # cuda:0 has two workers now
    assert gpu_loads(redis, gpus) == [2, 2]
    third.release()
    assert gpu_loads(redis, gpus) == [1, 2]
    assert start(redis, gpus, "fifth").device == "cuda:0"
    assert all(owner.exclusive for owner in owners)


def test_a_sharer_takes_over_a_lapsed_lease(redis):
    gpus = fake_gpus(1)
    start(redis, gpus, "killed")
    sharer = start(redis, gpus, "sharer")
    assert not sharer.exclusive
    time.sleep(TTL * 1.2)
    sharer.renew()
    assert sharer.exclusive
    assert gpu_loads(redis, gpus) == [1]


def test_a_sharer_killed_without_release_stops_counting(redis):
    gpus = fake_gpus(1)
    owner = start(redis, gpus, "owner")
    start(redis, gpus, "killed-sharer")
    assert gpu_loads(redis, gpus) == [2]
    time.sleep(TTL * 1.2)
    owner.renew()
    assert gpu_loads(redis, gpus) == [1]


def test_a_late_release_leaves_the_next_holders_lease_alone(redis):
    gpus = fake_gpus(1)
    stalled = start(redis, gpus, "stalled")
    time.sleep(TTL * 1.2)  # its renewals stalled; the lease lapsed
    successor = start(redis, gpus, "successor")
    assert successor.exclusive
    stalled.release()
    assert redis.get(key_for(Kind.GPU_LEASE, gpus[0])) == b"successor"
    stalled.renew()  # it notices and shares rather than take the GPU back
    assert not stalled.exclusive
    assert gpu_loads(redis, gpus) == [2]


def test_the_pulse_thread_renews_the_lease(redis, make_settings):
    settings = make_settings(heartbeat_ttl=1)
    gpus = fake_gpus(1)
    lease = start(redis, gpus, "pulsed", ttl=settings.heartbeat_ttl)
    worker = SegmentWorker([settings.queue], connection=redis, settings=settings, gpu_lease=lease)
    pulse = threading.Thread(target=worker._pulse, daemon=True)
    pulse.start()
    try:
        time.sleep(3 * settings.heartbeat_ttl)
        assert redis.get(key_for(Kind.GPU_LEASE, gpus[0])) == b"pulsed"
    finally:
        worker.teardown()
        pulse.join(5)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_a_named_device_is_kept(make_settings, device):
    assert worker_device(make_settings(device=device), fake_gpus(2)) == (device, None)


def test_auto_leases_a_gpu_as_the_worker_starts(redis, make_settings):
    gpus = fake_gpus(2)
    start(redis, gpus, "first")
    device, lease = worker_device(make_settings(device="cuda:auto"), gpus)
    assert device == "cuda:1" and lease.exclusive
    assert redis.get(key_for(Kind.GPU_LEASE, gpus[1])) == lease.owner.encode()


def test_auto_without_a_gpu_is_an_error(make_settings):
    with pytest.raises(RuntimeError, match="no CUDA device"):
        worker_device(make_settings(device="cuda:auto"), [])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_an_auto_worker_on_a_host_without_gpus_says_so(redis_url):
    command = [sys.executable, "-m", "apps.cli", "worker", "--redis", redis_url, "--device", "cuda:auto", "--burst"]
    done = subprocess.run(command, env=process_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "cannot use device 'cuda:auto': no CUDA device is visible" in done.stderr

