"""Attack: a flood of TCP connections to the bus port that never start TLS, each from its own loopback
address, against an appliance whose descriptor limit is low.

Before the defence, the idle connections took every descriptor: the web port stopped answering,
publishes timed out and collectors crashed on EMFILE until they were disabled. Now the bus gets only
the descriptors left after the store, collectors, web port and control socket have theirs
(grpc's `grpc.max_allowed_incoming_connections`), and grpc closes a connection that has not finished
its TLS handshake within 10 s.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amoskys.app import appliance_credentials
from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.config import BusConfig, Config
from amoskys.events import EnvelopeStamper
from amoskys.loadgen import SyntheticEvents
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.store import Store
from amoskys.wiring import build_bus, build_bus_server

from support import IN_CI, amoskys, eventually, http_get

pytestmark = [pytest.mark.e2e]

#: The appliance's RLIMIT_NOFILE, soft and hard (so it cannot raise it).
FD_LIMIT = 1024
#: Connections the attacker keeps open at once: three times what the appliance may hold.
FLOOD_CONNECTIONS = 3 * FD_LIMIT
#: How long the appliance is watched while the flood holds (longer than the 10 s handshake timeout, so
#: connections the bus accepted are cut and replaced while we watch).
WATCH_SECONDS = 14.0

_WITH_FD_LIMIT = (
    "import os, resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT})); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class IdleFlood:
    """Keeps `target` TCP connections open to 127.0.0.1:`port`, each bound to its own 127.x.y.z address,
    sending nothing. A connection the server closes is replaced by a new one, at most `rate` new
    connections a second; a connect that does not complete within `connect_timeout` is given up."""

    def __init__(self, port: int, target: int, *, rate: int = 1000, connect_timeout: float = 3.0) -> None:
        self.port = port
        self.target = target
        self.rate = rate
        self.connect_timeout = connect_timeout
        self.connected = 0  # connects that completed
        self.closed_by_server = 0  # completed connections the server closed or reset
        self.failed = 0  # connects refused or timed out
        self.open_now = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idle-flood", daemon=True)
        self._addresses = self._loopback_addresses()

    @staticmethod
    def _loopback_addresses() -> Iterator[str]:
        while True:
            for b in range(16, 255):
                for c in range(256):
                    for d in range(1, 255):
                        yield f"127.{b}.{c}.{d}"

    def start(self) -> IdleFlood:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, float] = {}  # connect in progress → its deadline
        established: set[socket.socket] = set()
        allowance, last = 0.0, time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                allowance = min(float(self.rate), allowance + (now - last) * self.rate)
                last = now
                while len(pending) + len(established) < self.target and allowance >= 1:
                    allowance -= 1
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.bind((next(self._addresses), 0))
                    code = s.connect_ex(("127.0.0.1", self.port))
                    if code not in (0, errno.EINPROGRESS):
                        self.failed += 1
                        s.close()
                        continue
                    pending[s] = now + self.connect_timeout
                    sel.register(s, selectors.EVENT_WRITE)
                for key, _ in sel.select(timeout=0.05):
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    if s in pending:
                        del pending[s]
                        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                            self.failed += 1
                            sel.unregister(s)
                            s.close()
                            continue
                        self.connected += 1
                        established.add(s)
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:  # readable: the server closed (we never send, it never speaks first)
                        s.recv(1)
                    except OSError:
                        pass
                    self.closed_by_server += 1
                    established.discard(s)
                    sel.unregister(s)
                    s.close()
                now = time.monotonic()
                for s, deadline in list(pending.items()):
                    if now > deadline:
                        del pending[s]
                        self.failed += 1
                        sel.unregister(s)
                        s.close()
                self.open_now = len(established)
        finally:
            for s in [*pending, *established]:
                s.close()
            sel.close()
            self.open_now = 0


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(needed, soft), max(needed, hard)))
    except (ValueError, OSError):
        message = f"the attacker needs {needed} descriptors; RLIMIT_NOFILE is {soft}/{hard}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _status(data_dir: Path) -> dict:
    return json.loads(amoskys("status", "--json", "--data-dir", str(data_dir), timeout=20).stdout)


def _unhealthy(status: dict) -> list[str]:
    """Collectors that ought to run and do not, or that ran short of descriptors."""
    return [
        f"{c['name']}: {c['state']} {c['reason']} (errors {c['errors']}, last: {c['last_error']})"
        for c in status["collectors"]
        if c["name"] in ("heartbeat", "host", "process")
        and (c["state"] != "running" or "Too many open files" in c["last_error"])
    ]


async def test_idle_connection_flood_on_the_bus_port_leaves_web_bus_and_collectors_working(
    appliance_factory, tmp_path: Path
) -> None:
    _raise_own_fd_limit(FLOOD_CONNECTIONS + 512)
    cfg = tmp_path / "amoskys.toml"
    # collectors that open files often, so descriptor starvation would show at once
    cfg.write_text("[collectors.host]\ninterval_seconds = 1\n[collectors.heartbeat]\ninterval_seconds = 1\n")
    app = appliance_factory("--config", str(cfg), prefix=(sys.executable, "-c", _WITH_FD_LIMIT))
    await asyncio.to_thread(app.wait_ready, 30)
    pid, data = app.proc.pid, app.data_dir
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (FD_LIMIT, FD_LIMIT)

    bundle = tmp_path / "bundle"
    await asyncio.to_thread(
        amoskys, "agents", "enroll", "edge-agent", "--out", str(bundle), "--data-dir", str(data)
    )
    identity = await PublisherIdentity.load(bundle)
    address = f"127.0.0.1:{app.bus_port}"
    events = SyntheticEvents("edge-agent")
    baseline_fds = _open_fds(pid)

    async with BusClient(identity, address, call_timeout_seconds=10) as client:
        # an agent that was connected before the attack
        async with asyncio.timeout(30):
            await client.publish_raw(events.make(10)[1])

        flood = IdleFlood(app.bus_port, FLOOD_CONNECTIONS).start()
        try:
            # more connections than the appliance could ever hold
            await eventually(lambda: flood.connected >= FD_LIMIT, within=60, what="the flood's connections")

            failures: list[str] = []
            peak_fds = 0
            web_ok = publishes = 0
            watch_end = time.monotonic() + WATCH_SECONDS
            while time.monotonic() < watch_end:
                peak_fds = max(peak_fds, _open_fds(pid))
                code, _ = await asyncio.to_thread(http_get, app.web_url + "/readyz", None, 5.0)
                if code == 200:
                    web_ok += 1
                else:
                    failures.append(f"web /readyz answered {code or 'nothing'}")
                try:
                    async with asyncio.timeout(10):
                        await client.publish_raw(events.make(10)[1])
                    publishes += 1
                except TimeoutError:
                    failures.append("a publish on the agent's open channel was not acked within 10 s")
                try:
                    sick = _unhealthy(await asyncio.to_thread(_status, data))
                except AssertionError as err:
                    sick = [f"amoskys status failed: {err}"]
                failures += sick
                if failures:
                    break
                peak_fds = max(peak_fds, _open_fds(pid))
        finally:
            flood.stop()
        chain = client.prev_digest

    assert not failures, (
        f"under a flood of {flood.connected} idle connections (fds peaked at {peak_fds}/{FD_LIMIT}): "
        + "; ".join(dict.fromkeys(failures))
    )
    assert web_ok >= 3 and publishes >= 3
    assert peak_fds < FD_LIMIT - 64, f"the appliance held {peak_fds} of its {FD_LIMIT} descriptors"
    assert flood.closed_by_server > FD_LIMIT, "the bus held connections instead of refusing them"

    # after the flood: descriptors come back, a new connection of the agent publishes, collectors are healthy
    await eventually(
        lambda: _open_fds(pid) <= baseline_fds + 64,
        within=30,
        what="descriptors to come back after the flood",
    )
    async with BusClient(identity, address, prev_digest=chain, call_timeout_seconds=10) as fresh:
        async with asyncio.timeout(30):
            ack = await fresh.publish_raw(events.make(200)[1])
    assert ack.accepted == 200
    status = await asyncio.to_thread(_status, data)
    assert not _unhealthy(status), status["collectors"]
    assert 0 < status["appliance"]["bus_max_connections"] < FD_LIMIT, status["appliance"]


def _closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def test_the_bus_closes_connections_beyond_its_limit_at_once_and_idle_ones_after_10_s(
    tmp_path: Path,
) -> None:
    """The grpc core arguments do what we rely on: `grpc.max_allowed_incoming_connections` refuses
    extra connections as they arrive, `grpc.server_handshake_timeout_ms` cuts the idle ones it took."""
    limit, attempts = 5, 20
    config = Config(bus=BusConfig(max_connections=limit, server_ip_addresses=("127.0.0.1",)))
    layout = Layout(tmp_path)
    creds = await asyncio.to_thread(appliance_credentials, config, layout)  # as the appliance does
    metrics = Metrics()
    store = await Store.open(layout.db, config.store, metrics, source_name="appliance")
    writer = asyncio.create_task(store.run())
    bus, service = build_bus(store, metrics, config.bus, stamper=EnvelopeStamper("appliance"))
    server = build_bus_server(creds, config.bus, service)
    socks: list[socket.socket] = []
    try:
        port = await server.start("127.0.0.1", 0)
        t0 = time.monotonic()
        for i in range(attempts):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((f"127.21.0.{i + 1}", 0))
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            socks.append(s)
        closed_at: dict[int, float] = {}

        def poll() -> None:
            for i, s in enumerate(socks):
                if i not in closed_at and _closed_by_peer(s):
                    closed_at[i] = time.monotonic() - t0

        while len(closed_at) < attempts - limit:
            assert time.monotonic() - t0 < 5, f"only {len(closed_at)} of {attempts - limit} extra closed"
            await asyncio.sleep(0.02)
            poll()
        assert len(closed_at) == attempts - limit  # the ones within the limit are held ...
        while len(closed_at) < attempts:
            assert time.monotonic() - t0 < 30, f"{attempts - len(closed_at)} idle connections still open"
            await asyncio.sleep(0.05)
            poll()
        late = sorted(closed_at.values())[-limit:]
        assert min(late) > 8.0, f"idle connections were cut before the handshake timeout: {late}"
    finally:
        for s in socks:
            s.close()
        await server.stop(0)
        await bus.close()
        await store.close()
        await writer
