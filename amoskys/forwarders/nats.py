"""The NATS sink: publishes every committed event to the fleet's JetStream stream, exactly once.

Each event goes to ``amoskys.<site>.<box>.<source>.<kind>`` (`box`: this appliance's name), its
payload the stored Envelope bytes as they are, with ``Nats-Msg-Id = <source>:<event_id>`` (the stream
drops a repeat within its duplicate window). A batch of the shared loop (`amoskys.forwarders.base`) is
a window of `publish_async` calls whose PubAcks are all awaited, each for at most
`ack_timeout_seconds`; batches pipeline up to `max_in_flight` unacked messages in all. The cursor
moves past a batch only when every one of its messages was acked.

Exactly once, whatever the outage and the duplicate window. nats-py keeps what was published while it
reconnects in a buffer and sends it after the reconnect, while what went onto the dying socket is lost:
the stream may hold the first and last thirds of a window but not the middle. So a batch that was not
acked whole is never simply sent again. First the sink *reconciles*: once connected, it flushes
(everything buffered has reached the server), then reads this box's messages (subject filter
``amoskys.<site>.<box>.>``, headers only) after a stream sequence known to lie below every message it
may have published for the unacked rows, and collects their Msg-Ids; then it publishes only the unacked
events whose Msg-Id is not among them. The same happens after every reconnect, before the batches
sealed from then on are published, and at every start, from the sequence saved with the cursor
(`checkpoint`: the stream sequence acked last before the oldest batch still open was sealed; a message
published after an ack was received is stored after it). Batches already under way when the connection
dropped go on publishing into nats-py's reconnect buffer, up to its size. The one race left — a message that reached the server before the flush but is stored after the read — lasts
milliseconds, far inside any duplicate window, so the server drops the repeat.

Rows the hub took from NATS (origin ``nats:<box>``) are never published back.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
from collections.abc import Sequence

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from prometheus_client import CollectorRegistry, Counter, Gauge

from amoskys.collectors.clock import Clock
from amoskys.config import NatsForwarderConfig
from amoskys.errors import AmoskysError, ConfigError
from amoskys.forwarders.base import Batch, Forwarder, SendResult, SendStatus
from amoskys.metrics import Metrics
from amoskys.nats import subjects
from amoskys.nats.connection import DEFAULT_PENDING_BYTES, ConnectionState, connect, describe_error
from amoskys.nats.stream import StreamConfigError, StreamState, ensure_stream
from amoskys.retry import Backoff
from amoskys.sources.origin import is_from_nats
from amoskys.store import Store
from amoskys.store.outbox import Row, read_keys

log = structlog.get_logger(__name__)

#: The sink's name: its cursor's key and its metrics' label.
NAME = "nats"
#: Most events in one batch (one window of publishes whose acks are awaited together).
BATCH_EVENTS = 256
#: How long a batch waits for more rows once it has one.
BATCH_WAIT_MS = 20
#: Messages fetched per request while reconciling (headers only: small).
RECONCILE_FETCH = 2000
#: The server deletes a reconciliation's consumer this long after its last fetch (a box's NATS user
#: needs no right to delete consumers).
RECONCILE_INACTIVE_S = 10.0
#: What a message costs in the reconnect buffer beyond its subject and payload (HPUB line, headers).
_MSG_OVERHEAD = 256
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


class NatsForwarderMetrics:
    """The NATS sink's own series (lag, sent, retries are the shared forwarder series, sink="nats")."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "amoskys_nats_connected",
            "1 while the NATS forwarder is connected to a server.",
            registry=registry,
        )
        self.reconciliations = Counter(
            "amoskys_nats_reconciliations_total",
            "Times the NATS forwarder read its own messages back before publishing again.",
            registry=registry,
        )
        self.found = Counter(
            "amoskys_nats_found_events_total",
            "Unacked events a reconciliation found already in the stream (not published again).",
            registry=registry,
        )
        self.republished = Counter(
            "amoskys_nats_republished_events_total",
            "Events published again after a reconciliation did not find them in the stream.",
            registry=registry,
        )
        self.ack_timeouts = Counter(
            "amoskys_nats_ack_timeouts_total",
            "Publishes whose PubAck did not come within ack_timeout_seconds.",
            registry=registry,
        )
        self.remote_seq = Gauge(
            "amoskys_nats_remote_seq",
            "The stream sequence saved with the NATS forwarder's cursor.",
            registry=registry,
        )


@dataclasses.dataclass(slots=True)
class _Message:
    store_seq: int
    subject: str
    msg_id: str
    envelope: bytes
    acked: bool = False
    attempts: int = 0


@dataclasses.dataclass(slots=True)
class _Window:
    """A batch's payload: its messages and what the sink knows about their fate."""

    messages: list[_Message]
    floor: int  # every message of this batch is stored (if at all) after this stream sequence
    need: int  # publish only after the reconciliation of this generation has completed (0: none)
    skipped: int = 0  # rows not published (taken from NATS, or not nameable as a subject)


class _NotReady(Exception):
    """Not connected (or the connection changed while reconciling): try again later."""


@dataclasses.dataclass(slots=True)
class NatsStats:
    """Counts for `status()` and tests."""

    reconciliations: int = 0
    found: int = 0
    republished: int = 0
    ack_timeouts: int = 0
    disconnects: int = 0
    buffered_bytes_at_disconnect: int = 0  # summed over disconnects: what nats-py held to send after
    published_while_disconnected: int = 0


class NatsSink:
    """Publishes batches to JetStream (see the module docstring). `run_connection()` must run beside
    the forwarder (it is the forwarder's companion): it connects, keeps the stream, and follows the
    connection's state."""

    def __init__(
        self,
        config: NatsForwarderConfig,
        store: Store,
        metrics: NatsForwarderMetrics,
        *,
        box: str,
        name: str = NAME,
        pending_bytes: int = DEFAULT_PENDING_BYTES,
    ) -> None:
        self.name = name
        self.kinds = frozenset(config.kinds) if config.kinds else None
        self.config = config
        self.box = box
        self.stats = NatsStats()
        self._store = store
        self._metrics = metrics
        self._ack_timeout = config.ack_timeout_seconds
        self._pending_bytes = pending_bytes
        self._filter = subjects.box_filter(config.site, box)
        self._subjects: dict[tuple[str, str], str | None] = {}  # None: not a subject token (logged once)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self.stream: StreamState | None = None
        self._usable = asyncio.Event()  # connected, and the stream is known
        self._stream_known = asyncio.Event()  # publishing may start (into the reconnect buffer too)
        self._fatal = ""  # the stream cannot take our events: forwarding stops
        self._conn_error = ""  # the connection's last error while it is down (a refused login, say)
        self._epoch = 0  # disconnects seen
        # reconciliations: started (`_gen`), and the generation of the last one completed
        self._gen = 0
        self._done_gen = 0
        self._min_need = 1  # every batch sealed from now on waits for this generation
        self._lock = asyncio.Lock()
        self._found: set[str] = set()  # Msg-Ids the last reconciliation found after its floor
        self.high_seq = 0  # the highest stream sequence acked to this sink (or saved with its cursor)
        self._open: collections.OrderedDict[int, int] = collections.OrderedDict()  # first_seq -> floor
        # after a (re)start: rows up to `_resume_until` may have been published before it, after the
        # stream sequence saved with the cursor; that bound holds until the cursor passes them
        self._resume_floor: int | None = None
        self._resume_until = 0

    # ------------------------------------------------------------------ the connection (companion)

    async def run_connection(self) -> None:
        """Connect (waiting as long as it takes), make sure of the stream, then follow the connection
        until cancelled."""
        cfg = self.config
        try:
            nc = await connect(
                list(cfg.servers),
                tls_ca=cfg.tls_ca or None,
                tls_cert=cfg.tls_cert or None,
                tls_key=cfg.tls_key or None,
                credentials=cfg.credentials or None,
                name=f"amoskys-{self.box}",
                on_state_change=self._on_state,
                on_error=self._on_error,
                reconnect_time_wait_seconds=cfg.reconnect_wait_seconds,
                pending_bytes=self._pending_bytes,
            )
        except AmoskysError as err:
            self._fatal = str(err)
            return
        self._nc = nc
        try:
            self._js = js = nc.jetstream(publish_async_max_pending=2 * cfg.max_in_flight + BATCH_EVENTS)
            await self._ensure_stream(js)
            await asyncio.Event().wait()  # until cancelled: the state callbacks do the rest
        finally:
            self._usable.clear()
            self._metrics.connected.set(0)
            await nc.close()

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        cfg = self.config
        backoff = Backoff(0.5, 10.0)
        logged = False
        while True:
            try:
                self.stream = await ensure_stream(
                    js,
                    cfg.stream,
                    subjects_prefix=f"{subjects.ROOT}.{subjects.escape(cfg.site)}",
                    max_age_seconds=cfg.stream_max_age_hours * 3600,
                    max_bytes=cfg.stream_max_mb * 1024 * 1024,
                    duplicate_window_seconds=cfg.duplicate_window_seconds,
                )
            except StreamConfigError as err:
                self._fatal = str(err)
                return
            except (*_NATS_ERRORS, nats.js.errors.Error) as err:
                if not logged:
                    logged = True
                    log.warning("nats_stream_unavailable", stream=cfg.stream, error=repr(err))
                await backoff.sleep()
                continue
            break
        if self.stream.duplicate_window_seconds < 1:
            log.warning("nats_stream_no_duplicate_window", stream=cfg.stream)
        self._stream_known.set()
        if self._nc is not None and self._nc.is_connected:
            self._usable.set()
            self._metrics.connected.set(1)

    def _on_error(self, err: Exception) -> None:
        self._conn_error = describe_error(err)

    def _not_connected(self) -> str:
        """The reason while there is no connection, with the server's last word when it gave one."""
        return f"NATS: not connected: {self._conn_error}" if self._conn_error else "NATS: not connected"

    def _on_state(self, state: ConnectionState) -> None:
        if state is ConnectionState.DISCONNECTED:
            self._epoch += 1
            self._usable.clear()
            self._metrics.connected.set(0)
            self.stats.disconnects += 1
            if self._nc is not None:
                self.stats.buffered_bytes_at_disconnect += self._nc.pending_data_size
        elif state in (ConnectionState.CONNECTED, ConnectionState.RECONNECTED):
            self._conn_error = ""
            if state is ConnectionState.RECONNECTED:
                self._min_need = self._gen + 1  # batches sealed from now on publish after a reconciliation
            if self.stream is not None:
                self._usable.set()
                self._metrics.connected.set(1)
        else:
            self._usable.clear()
            self._metrics.connected.set(0)

    # ------------------------------------------------------------------ the Sink protocol

    async def resume(self, acked_seq: int) -> list[Batch]:
        """Nothing is re-sent as sealed: the rows after the cursor are read again, and the first send
        reconciles from the stream sequence saved with the cursor."""
        cursor = await self._store.sink_cursor(self.name)
        saved = cursor.remote_seq if cursor is not None and cursor.remote_seq is not None else 0
        self.high_seq = max(self.high_seq, saved)
        self._resume_floor, self._resume_until = saved, self._store.last_seq
        self._min_need = self._gen + 1
        return []

    async def seal(self, rows: Sequence[Row]) -> Batch:
        first, last = rows[0][0], rows[-1][0]
        keys = await self._store.read(lambda conn: read_keys(conn, first_seq=first, last_seq=last))
        by_seq = {k[0]: k for k in keys}
        messages: list[_Message] = []
        skipped = 0
        for store_seq, _received, envelope in rows:
            key = by_seq.get(store_seq)
            if key is None or is_from_nats(key[4]):
                skipped += 1
                continue
            _, source, event_id, kind, _origin = key
            subject = self._subject(source, kind)
            if subject is None:
                skipped += 1
                continue
            messages.append(_Message(store_seq, subject, subjects.msg_id(source, event_id), envelope))
        floor = self.high_seq
        first = rows[0][0]
        self._open[first] = min(floor, self._open.get(first, floor))  # sealed again after a restart
        return Batch(rows, _Window(messages, floor, self._min_need, skipped))

    def _floor(self) -> int:
        """A stream sequence below every message published for a row after the cursor."""
        floor = next(iter(self._open.values()), self.high_seq)
        return floor if self._resume_floor is None else min(floor, self._resume_floor)

    def _subject(self, source: str, kind: str) -> str | None:
        key = (source, kind)
        if key in self._subjects:
            return self._subjects[key]
        subject: str | None
        try:
            subject = subjects.event_subject(self.config.site, self.box, source, kind)
        except ValueError:
            log.warning("nats_event_not_published", source=source, kind=kind, reason="not a subject token")
            subject = None
        if len(self._subjects) > 10_000:
            self._subjects.clear()
        self._subjects[key] = subject
        return subject

    async def send(self, batch: Batch) -> SendResult:
        window: _Window = batch.payload
        if not window.messages:
            return SendResult(SendStatus.OK)  # nothing of it is published (rows taken from NATS)
        if self._fatal:
            return SendResult(SendStatus.STOP, message=self._fatal)
        try:
            await asyncio.wait_for(self._stream_known.wait(), self._ack_timeout)
        except TimeoutError:
            if self._fatal:
                return SendResult(SendStatus.STOP, message=self._fatal)
            return SendResult(SendStatus.RETRY, message=self._not_connected(), unreachable=True)
        if window.need > self._done_gen:
            try:
                await self._reconcile(window.need)
            except (_NotReady, *_NATS_ERRORS, nats.js.errors.Error) as err:
                window.need = max(window.need, self._gen + 1)
                return SendResult(SendStatus.RETRY, message=f"NATS: reconciling: {err!r}", unreachable=True)
        return await self._publish(window)

    async def _publish(self, window: _Window) -> SendResult:
        nc, js = self._nc, self._js
        if nc is None or js is None:  # not connected yet (send waits for the stream first)
            return SendResult(SendStatus.RETRY, message=self._not_connected(), unreachable=True)
        duplicates = 0
        futures: dict[asyncio.Future[api.PubAck], _Message] = {}
        error = ""
        found = self._found
        for m in window.messages:
            if m.acked:
                continue
            if m.msg_id in found:  # stored by an earlier attempt (or run) whose ack was lost
                m.acked = True
                duplicates += 1
                self.stats.found += 1
                self._metrics.found.inc()
                continue
            if not nc.is_connected:
                room = self._pending_bytes - nc.pending_data_size
                if len(m.envelope) + len(m.subject) + _MSG_OVERHEAD > room:
                    error = "NATS: reconnect buffer full"
                    break  # the rest waits (publishing now would raise and leak nats-py's slot)
                self.stats.published_while_disconnected += 1
            if m.attempts:
                self.stats.republished += 1
                self._metrics.republished.inc()
            m.attempts += 1
            try:
                future = await js.publish_async(
                    m.subject, m.envelope, headers={subjects.MSG_ID_HEADER: m.msg_id}
                )
            except (*_NATS_ERRORS, nats.js.errors.Error) as err:
                error = f"NATS: publish: {err!r}"
                break
            futures[future] = m
        timeouts = 0
        if futures:
            done, pending = await asyncio.wait(futures, timeout=self._ack_timeout)
            for future in pending:
                future.cancel()  # frees nats-py's slot; the message may still be stored (reconciled)
            timeouts = len(pending)
            for future in done:
                if future.cancelled():
                    continue
                exc = future.exception()
                if exc is not None:
                    error = error or f"NATS: {exc!r}"
                    continue
                ack = future.result()
                m = futures[future]
                m.acked = True
                if ack.duplicate:
                    duplicates += 1
                if ack.seq is not None and ack.seq > self.high_seq:
                    self.high_seq = ack.seq
        if timeouts:
            self.stats.ack_timeouts += timeouts
            self._metrics.ack_timeouts.inc(timeouts)
            error = error or f"NATS: {timeouts} PubAcks not received within {self._ack_timeout:g} s"
        if all(m.acked for m in window.messages):
            return SendResult(SendStatus.OK, duplicates=duplicates)
        window.need = self._gen + 1  # only a reconciliation started after this attempt may clear it
        return SendResult(SendStatus.RETRY, message=error or "NATS: not acked", unreachable=True)

    async def _reconcile(self, need: int) -> None:
        """Read this box's messages after the oldest open batch's floor and keep their Msg-Ids."""
        async with self._lock:
            if self._done_gen >= need:
                return  # another batch's reconciliation, started after this one's need arose
            nc, js, stream = self._nc, self._js, self.stream
            if nc is None or js is None or stream is None or not nc.is_connected:
                raise _NotReady("not connected")
            self._gen += 1
            gen, epoch = self._gen, self._epoch
            await nc.flush(timeout=max(1, math.ceil(self._ack_timeout)))
            floor = self._floor()
            ids, top = await self._read_ids(js, stream.name, floor)
            if self._epoch != epoch or not nc.is_connected:
                raise _NotReady("disconnected while reconciling")
            if top < floor:  # the stream is younger than our saved position: it was recreated
                log.warning("nats_stream_behind_cursor", stream=stream.name, stream_seq=top, saved_seq=floor)
            self._found = ids
            self._done_gen = gen
            self.stats.reconciliations += 1
            self._metrics.reconciliations.inc()
            log.info("nats_reconciled", after_seq=floor, found=len(ids))

    async def _read_ids(self, js: JetStreamContext, stream: str, floor: int) -> tuple[set[str], int]:
        """The Msg-Ids of this box's messages after stream sequence `floor`, and the stream's last
        sequence then. An ephemeral pull consumer, headers only, no acks."""
        info = await js.stream_info(stream)
        last = int(info.state.last_seq or 0)
        start = floor + 1 if last >= floor else 1
        if last < start:
            return set(), last
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE,
            headers_only=True,
            mem_storage=True,
            inactive_threshold=RECONCILE_INACTIVE_S,
            filter_subject=self._filter,
        )
        sub = await js.pull_subscribe(self._filter, stream=stream, config=config)
        ids: set[str] = set()
        try:
            consumer_info = await sub.consumer_info()
            remaining = consumer_info.num_pending or 0
            while remaining > 0:
                msgs = await sub.fetch(min(RECONCILE_FETCH, remaining), timeout=self._ack_timeout)
                for msg in msgs:
                    msg_id = (msg.headers or {}).get(subjects.MSG_ID_HEADER)
                    if msg_id:
                        ids.add(msg_id)
                remaining = msgs[-1].metadata.num_pending if msgs else 0
        finally:
            await sub.unsubscribe()  # the server drops the consumer after RECONCILE_INACTIVE_S
        return ids, last

    def checkpoint(self, batch: Batch) -> int:
        """The stream sequence to save as the cursor moves past `batch`: below every message published
        for a later row (the floor of the oldest batch still open, else the highest acked)."""
        first = batch.first_seq
        while self._open:
            key = next(iter(self._open))
            if key > first:
                break
            self._open.popitem(last=False)
        if self._resume_floor is not None and batch.last_seq >= self._resume_until:
            self._resume_floor = None  # every row published before the restart is acked now
        remote = self._floor()
        self._metrics.remote_seq.set(remote)
        return remote

    @property
    def buffered_bytes(self) -> int:
        """Bytes nats-py holds to send (after the reconnect, while disconnected)."""
        return self._nc.pending_data_size if self._nc is not None else 0

    @property
    def acks_pending(self) -> int:
        """Publishes whose PubAck is awaited now."""
        return self._js.publish_async_pending() if self._js is not None else 0

    @property
    def connected(self) -> bool:
        return self._usable.is_set()

    async def close(self) -> None:
        nc = self._nc
        if nc is not None and not nc.is_closed:
            await nc.close()


def build_nats_forwarder(
    config: NatsForwarderConfig,
    store: Store,
    metrics: Metrics,
    *,
    box: str,
    clock: Clock | None = None,
    pending_bytes: int = DEFAULT_PENDING_BYTES,
    backoff_cap_seconds: float = 2.0,
) -> Forwarder:
    """The NATS forwarder of `[forwarders.nats]` for the box called `box` (this appliance's name).
    Raises ConfigError when `box` cannot be a subject token."""
    try:
        subjects.check_token("appliance.name", box)
    except ValueError as err:
        raise ConfigError(
            f"{err} (the NATS forwarder publishes under the appliance's name)",
            path="appliance.name",
            value=box,
        ) from err
    sink = NatsSink(
        config,
        store,
        metrics.component(NatsForwarderMetrics),
        box=box,
        pending_bytes=pending_bytes,
    )
    batch_events = min(BATCH_EVENTS, config.max_in_flight)
    forwarder = Forwarder(
        sink,
        store,
        metrics,
        batch_events=batch_events,
        batch_wait_ms=BATCH_WAIT_MS,
        max_in_flight=max(1, config.max_in_flight // batch_events),
        backoff_base_seconds=0.05,
        backoff_cap_seconds=backoff_cap_seconds,
        clock=clock,
        detail={"servers": list(config.servers), "stream": config.stream, "site": config.site, "box": box},
        companion=sink.run_connection,
        checkpoint=sink.checkpoint,
    )
    return forwarder
