"""Losing a host with jobs in flight: Redis primary, a worker's link, the API's link, and a slow lossy network.

Every part runs on a host of its own (a network namespace, :mod:`benchmarks.hosts`);
Redis is a primary, a replica and three Sentinels. Each test runs a ``gdc batch`` of tiny
jobs through one fault and wants every image labelled once: no job lost, none sent twice.
Needs root, ``ip netns`` and ``/dev/net/tun`` (CI has them). Figures print with ``-s``; the long runs are ``python -m benchmarks.faults``.
"""
from __future__ import annotations

import pytest

from benchmarks.hosts import GdcOnHosts, why_no_namespaces
from benchmarks.network_faults import (
    SETTINGS,
    SLOW_NETWORK_SETTINGS,
    TABLE_HEADER,
    FaultRun,
    api_cut_off,
    network_impaired,
    primary_killed,
    worker_cut_off,
)

pytestmark = pytest.mark.skipif(bool(why_no_namespaces()), reason=str(why_no_namespaces()))
IMAGES = 30
# At 400 ms round trips a tiny job takes a worker 14-40 s (each of its Redis calls waits one):
# 4 images keep the slow-network test near a minute (benchmarks.faults runs 200).
SLOW_NETWORK_IMAGES = 4


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    gdc = GdcOnHosts(tmp_path_factory.mktemp("hosts"), **SETTINGS)
    try:
        yield gdc
    finally:
        gdc.close()


def test_delay_and_loss_on_every_link_lose_nothing(tmp_path):
    """200 ms delay and 5% loss on every packet each host sends, for a whole batch.

    A deployment of its own, set for such a network (SLOW_NETWORK_SETTINGS); first, so that the
    module's deployment is not started yet.
    """
    gdc = GdcOnHosts(tmp_path / "hosts", **SLOW_NETWORK_SETTINGS)
    try:
        run, network = network_impaired(gdc, tmp_path, SLOW_NETWORK_IMAGES, delay_ms=200, loss_percent=5)
    finally:
        gdc.close()
    print(f"the network: {network}")
    assert network["round_trip"] >= 0.4 > network["round_trip_before"]  # 200 ms each way was in force
    assert network["dropped"] > 0  # and so was the loss
    assert_every_image_labelled_once(run, SLOW_NETWORK_IMAGES)


def assert_every_image_labelled_once(run: FaultRun, images: int = IMAGES) -> None:
    print(f"\n{TABLE_HEADER}\n{run.row()}")
    assert (run.submitted, run.succeeded, run.lost, run.duplicated) == (images, images, 0, 0), run


def test_killing_the_redis_primary_promotes_the_replica_and_loses_no_job(deployment, tmp_path):
    run = primary_killed(deployment, tmp_path, IMAGES)
    assert_every_image_labelled_once(run)
    assert run.recovery is not None


def test_a_worker_cut_off_mid_job_hands_it_over_and_overwrites_nothing_when_back(deployment, tmp_path):
    run, long_job = worker_cut_off(deployment, tmp_path, IMAGES, seconds=15)
    assert_every_image_labelled_once(run)
    print(f"long job: {long_job}")
    assert long_job["running_when_cut"] and long_job["status"] == "succeeded"
    assert long_job["successful_runs"] == 1  # the cut-off run recorded no second outcome
    assert not long_job["standing_run_is_the_cut_off_one"]  # the retry's run stands


def test_the_api_cut_off_mid_batch_is_waited_for_and_nothing_is_sent_twice(deployment, tmp_path):
    run = api_cut_off(deployment, tmp_path, IMAGES, seconds=10)
    assert_every_image_labelled_once(run)
    assert run.unanswered > 0  # the probes saw the API gone
