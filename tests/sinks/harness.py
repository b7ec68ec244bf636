"""Real parts for the alert sink tests: a store in tmp_path with Alert events committed to it, the
sinks' forwarders built from their config as the appliance builds them, and a webhook receiver (an
HTTP server on loopback, in its own thread)."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from amoskys.config import SinksConfig, StoreConfig
from amoskys.events import EnvelopeStamper
from amoskys.forwarders.group import Forwarders
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.sinks.build import build_sinks
from amoskys.store import Record, Store

BOX = "box-1"
LEVELS = {
    "informational": ev.Alert.LEVEL_INFORMATIONAL,
    "low": ev.Alert.LEVEL_LOW,
    "medium": ev.Alert.LEVEL_MEDIUM,
    "high": ev.Alert.LEVEL_HIGH,
    "critical": ev.Alert.LEVEL_CRITICAL,
}


def alert(
    i: int,
    *,
    level: str = "high",
    rule_id: str = "amoskys.exec_from_tmp",
    summary: str = "",
    title: str = "Execution from /tmp",
    **fields: object,
) -> ev.Envelope:
    """Alert number i (a body only: the store's stamper gives it its id, source and sequence)."""
    return ev.Envelope(
        ts_ns=time.time_ns(),
        alert=ev.Alert(
            rule="exec_from_tmp",
            rule_id=rule_id,
            title=title,
            level=LEVELS[level],
            summary=summary or f"alert {i}: /tmp/x{i} ran",
            host=BOX,
            count=1,
            tags=["attack.execution", "attack.t1059"],
            related_event_ids=[f"00000000-0000-7000-8000-{i:012x}"],
            attributes={"exe": f"/tmp/x{i}", "pid": str(1000 + i)},
            **fields,  # type: ignore[arg-type]
        ),
    )


@dataclass
class AlertStore:
    store: Store
    stamper: EnvelopeStamper
    metrics: Metrics

    async def publish(self, *envelopes: ev.Envelope) -> list[str]:
        """Commit the alerts (stamped as this box's); their event ids, in order."""
        stamped = [self.stamper.stamp(e, ts_ns=e.ts_ns) for e in envelopes]
        await self.store.submit([Record.from_envelope(e) for e in stamped], local=True)
        return [e.event_id for e in stamped]

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def alert_store(path: Path) -> AsyncIterator[AlertStore]:
    """A store with its writer running (closed after the block)."""
    metrics = Metrics()
    stamper = EnvelopeStamper(BOX)
    store = await Store.open(path, StoreConfig(max_batch_wait_ms=2), metrics, stamper=stamper)
    task = asyncio.create_task(store.run())
    try:
        yield AlertStore(store, stamper, metrics)
    finally:
        await store.close()
        await task


@asynccontextmanager
async def running_sinks(
    alerts: AlertStore, config: SinksConfig, *, backoff_cap_seconds: float = 0.5
) -> AsyncIterator[Forwarders]:
    """The sinks of `config` forwarding while the block runs (a short backoff cap: tests wait less)."""
    built = await build_sinks(config, alerts.store, alerts.metrics, backoff_cap_seconds=backoff_cap_seconds)
    forwarders = Forwarders(alerts.store, built)
    task = asyncio.create_task(forwarders.run())
    try:
        yield forwarders
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording every POST; `answer(n)` gives the status of the n-th
    request (0-based), 200 unless told otherwise. It can stop and start again on the same port."""

    answer: Callable[[int], int] = lambda n: 200
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/secret-path"

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.answer(len(receiver.requests))
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
                )
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
