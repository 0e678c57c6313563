"""Losing a host with long batches in flight: the figures of benchmarks/reliability.md ("Hosts").

The faults of tests/reliability/test_network_faults.py, each with a ``gdc batch`` of
``--images`` tiny jobs (64x48, 2 steps, 1 sample), on one deployment of network namespaces:
Redis primary, replica and three Sentinels, the API, two workers and the client each on a
host of its own; the slow network's fault on a deployment of its own, set for it
(``SLOW_NETWORK_SETTINGS``). Needs root; run from the repository root:

    .venv/bin/python -m benchmarks.faults --images 200
    .venv/bin/python -m benchmarks.faults --images 200 --faults network   # one fault alone

Prints the table and writes every figure, with each /readyz answer time, to ``--output``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from .hosts import GdcOnHosts, why_no_namespaces
from .network_faults import (
    SETTINGS,
    SLOW_NETWORK_SETTINGS,
    TABLE_HEADER,
    FaultRun,
    api_cut_off,
    network_impaired,
    primary_killed,
    replication_wait_cost,
    worker_cut_off,
    write_report,
)

# The faults, by the name --faults takes: the Redis primary killed, a worker's or the API's host
# cut off, 200 ms delay and 5% loss on every link.
FAULTS = ("primary", "worker", "api", "network")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="images per batch (default 200)")
    parser.add_argument("--cut", type=float, default=30, help="seconds a worker's and the API's host are cut off")
    parser.add_argument("--output", default="benchmarks/faults.json", help="JSON of every figure")
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS), help="which faults (default all)")
    args = parser.parse_args()
    if reason := why_no_namespaces():
        parser.error(reason)
    runs = []

    def record(run: FaultRun) -> None:  # printed at once too: a run stopped later keeps what it measured
        runs.append(run)
        print(run.row(), flush=True)

    with tempfile.TemporaryDirectory(prefix="gdc-faults-") as temporary:
        root = Path(temporary)
        if set(args.faults) - {"network"}:
            deployment = GdcOnHosts(root / "hosts", **SETTINGS)
            try:
                cost = replication_wait_cost(deployment)
                print(f"a write alone {cost['write'] * 1000:.2f} ms, with WAIT for the replica "
                      f"{cost['write_and_wait'] * 1000:.2f} ms (medians of 200)", flush=True)
                if "primary" in args.faults:
                    record(primary_killed(deployment, root, args.images))
                if "worker" in args.faults:
                    run, long_job = worker_cut_off(deployment, root, args.images, args.cut)
                    record(run)
                    print(f"worker cut off: the long job {long_job}", flush=True)
                if "api" in args.faults:
                    record(api_cut_off(deployment, root, args.images, args.cut))
            finally:
                deployment.close()
        if "network" in args.faults:
            # A deployment set for the slow network, as tests/reliability/test_network_faults.py has it.
            deployment = GdcOnHosts(root / "slow-hosts", **SLOW_NETWORK_SETTINGS)
            try:
                run, network = network_impaired(deployment, root, args.images, delay_ms=200, loss_percent=5)
                record(run)
                print(f"delay and loss: {network}", flush=True)
            finally:
                deployment.close()
    print(TABLE_HEADER)
    for run in runs:
        print(run.row())
    print("load average at the end (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    write_report(runs, Path(args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
