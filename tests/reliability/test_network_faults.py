"""Losing a host with jobs in flight: Redis primary, a worker's link, the API's link, and a slow lossy network.

Every part runs on a host of its own (a network namespace, :mod:`tests.reliability.hosts`);
Redis is a primary, a replica and three Sentinels. Each test runs a ``gdc batch`` of tiny
jobs through one fault and wants every image labelled once: no job lost, none sent twice.
Needs root and ``ip netns`` (CI has both). Figures print with ``-s``; the long runs are ``python -m benchmarks.faults``.
"""
from __future__ import annotations

import pytest

from tests.reliability.hosts import GdcOnHosts, has_netem, has_nftables, why_no_namespaces
from tests.reliability.network_faults import (
    SETTINGS,
    TABLE_HEADER,
    FaultRun,
    api_cut_off,
    network_impaired,
    primary_killed,
    worker_cut_off,
)

pytestmark = pytest.mark.skipif(bool(why_no_namespaces()), reason=str(why_no_namespaces()))
IMAGES = 30


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    gdc = GdcOnHosts(tmp_path_factory.mktemp("hosts"), **SETTINGS)
    try:
        yield gdc
    finally:
        gdc.close()


def assert_every_image_labelled_once(run: FaultRun) -> None:
    print(f"\n{TABLE_HEADER}\n{run.row()}")
    assert (run.submitted, run.succeeded, run.lost, run.duplicated) == (IMAGES, IMAGES, 0, 0), run


def test_killing_the_redis_primary_promotes_the_replica_and_loses_no_job(deployment, tmp_path):
    run = primary_killed(deployment, tmp_path, IMAGES)
    assert_every_image_labelled_once(run)
    assert run.recovery is not None


def test_a_worker_cut_off_mid_job_hands_it_over_and_overwrites_nothing_when_back(deployment, tmp_path):
    run, long_job = worker_cut_off(deployment, tmp_path, IMAGES, seconds=30)
    assert_every_image_labelled_once(run)
    print(f"long job: {long_job}")
    assert long_job["running_when_cut"] and long_job["status"] == "succeeded"
    assert long_job["successful_runs"] == 1  # the cut-off run recorded no second outcome
    assert not long_job["standing_run_is_the_cut_off_one"]  # the retry's run stands


def test_the_api_cut_off_mid_batch_is_waited_for_and_nothing_is_sent_twice(deployment, tmp_path):
    run = api_cut_off(deployment, tmp_path, IMAGES, seconds=10)
    assert_every_image_labelled_once(run)
    assert run.unanswered > 0  # the probes saw the API gone


@pytest.mark.skipif(
    not why_no_namespaces() and not has_netem() and not has_nftables(), reason="neither tc netem nor nftables here"
)
def test_delay_and_loss_on_every_link_lose_nothing(deployment, tmp_path):
    """5% of the packets on every link dropped, and 200 ms delay where the kernel has tc netem.

    Without netem (this build machine and CI), nftables drops the packets and NO delay is applied:
    the test then shows that loss alone loses no job; the delay is tested only where netem exists.
    """
    run, dropped = network_impaired(deployment, tmp_path, IMAGES, delay_ms=200, loss_percent=5)
    print(f"packets dropped on the links: {dropped}")
    assert dropped > 0  # the loss was in force
    assert_every_image_labelled_once(run)
