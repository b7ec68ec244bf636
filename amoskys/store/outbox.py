"""The store as an outbox: sink cursors, the batches a sink sealed, and reading rows after a cursor.

A sink (amoskys.forwarders) forwards the log in store order. Its cursor (table `sink_cursors`, keyed by
the sink's name) is the highest store_seq it had acked, and covers the kinds it forwards (None: every
kind); rows of other kinds count as acked by it, so retention never waits for them. A sink that signs
and chains its batches (the bus forwarder) records each batch's boundaries before sending it (table
`outbox_batches`): after a crash it rebuilds the same rows, hence the same bytes.

Writes (advancing a cursor, sealing a batch, registering the configured sinks) are `OutboxOp`s queued
on the writer: they ride its next group commit, and their future resolves after that COMMIT (no
transaction of their own, no extra fsync). Reads run on the store's read connection, in short
statements over a bounded window of store_seq, and return plain rows (no protobuf decoding).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiosqlite

from amoskys.proto import events_pb2
from amoskys.store.sql import fetch_one

#: store_seq values scanned per statement when a kinds filter applies.
WINDOW = 65_536
#: Most rows one read returns.
MAX_LIMIT = 100_000

#: (store_seq, received_ns, envelope): one row as a sink reads it.
Row = tuple[int, int, bytes]


def encode_kinds(kinds: Iterable[str] | None) -> str | None:
    """The column value of a kinds filter: NULL for every kind, else a sorted JSON array."""
    return None if kinds is None else json.dumps(sorted(set(kinds)))


def decode_kinds(value: str | None) -> frozenset[str] | None:
    return None if value is None else frozenset(json.loads(value))


@dataclass(frozen=True, slots=True)
class SinkCursor:
    """A sink's durable position: every row up to `store_seq` (and every row not of `kinds`) is acked."""

    name: str
    store_seq: int
    kinds: frozenset[str] | None
    enabled: bool
    updated_ns: int
    #: the sink's position in its receiver saved with `store_seq` (None: the sink keeps none)
    remote_seq: int | None = None


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """The boundaries of one batch a sink sealed: its rows are those of `kinds` with store_seq in
    first_seq..last_seq (there are `events` of them); `prev_digest` and `digest` place it in the
    sink's chain."""

    sink: str
    first_seq: int
    last_seq: int
    events: int
    kinds: frozenset[str] | None
    prev_digest: bytes
    digest: bytes
    sealed_ns: int


@dataclass(frozen=True, slots=True)
class OutboxRead:
    """Rows after a cursor, and how far the read looked: every row up to `scanned_to` not in `rows`
    is not of the sink's kinds (or is gone)."""

    rows: list[Row]
    scanned_to: int


# ---------------------------------------------------------------------- writes (on the writer thread)

_UPSERT_SINK = (
    "INSERT INTO sink_cursors (name, store_seq, enabled, updated_ns, kinds) VALUES (?, ?, 1, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET enabled = 1, kinds = excluded.kinds, updated_ns = excluded.updated_ns"
)


@dataclass(frozen=True, slots=True)
class RegisterSinks:
    """Make the configured sinks known and enabled (with their kinds; a new one starts at `start_seq`)
    and disable every other cursor: the cursors of sinks no longer configured hold nothing back."""

    sinks: Mapping[str, frozenset[str] | None]
    start_seq: int = 0

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.executemany(
            _UPSERT_SINK,
            [(name, self.start_seq, now_ns, encode_kinds(kinds)) for name, kinds in self.sinks.items()],
        )
        names = list(self.sinks)
        conn.execute(
            f"UPDATE sink_cursors SET enabled = 0, updated_ns = ? WHERE enabled = 1 "
            f"AND name NOT IN ({','.join('?' * len(names))})",
            (now_ns, *names),
        )


@dataclass(frozen=True, slots=True)
class AdvanceCursor:
    """Move a sink's cursor to `store_seq` (never backwards), with the sink's `remote_seq` when it keeps
    one (never backwards either), and forget its sealed batches that are acked now, but for the newest
    of them (the tip of its chain, which the next batch names)."""

    sink: str
    store_seq: int
    remote_seq: int | None = None

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.execute(
            "UPDATE sink_cursors SET store_seq = MAX(store_seq, ?), updated_ns = ? WHERE name = ?",
            (self.store_seq, now_ns, self.sink),
        )
        if self.remote_seq is not None:
            conn.execute(
                "UPDATE sink_cursors SET remote_seq = MAX(COALESCE(remote_seq, 0), ?) WHERE name = ?",
                (self.remote_seq, self.sink),
            )
        conn.execute(
            "DELETE FROM outbox_batches WHERE sink = ? AND last_seq <= ? AND first_seq < "
            "(SELECT MAX(first_seq) FROM outbox_batches WHERE sink = ? AND last_seq <= ?)",
            (self.sink, self.store_seq, self.sink, self.store_seq),
        )


@dataclass(frozen=True, slots=True)
class SaveBatch:
    """Record a sealed batch's boundaries (before it is sent)."""

    batch: SealedBatch

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        b = self.batch
        conn.execute(
            "INSERT OR REPLACE INTO outbox_batches (sink, first_seq, last_seq, events, kinds, prev_digest, "
            "digest, sealed_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                b.sink,
                b.first_seq,
                b.last_seq,
                b.events,
                encode_kinds(b.kinds),
                b.prev_digest,
                b.digest,
                b.sealed_ns,
            ),
        )


@dataclass(frozen=True, slots=True)
class DropBatches:
    """Forget every sealed batch of a sink (its chain starts again: its rows could not be rebuilt)."""

    sink: str

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.execute("DELETE FROM outbox_batches WHERE sink = ?", (self.sink,))


OutboxOp = RegisterSinks | AdvanceCursor | SaveBatch | DropBatches


# ---------------------------------------------------------------------- reads (the read connection)


def _kinds_clause(kinds: frozenset[str] | None) -> tuple[str, list[str]]:
    if kinds is None:
        return "", []
    ordered = sorted(kinds)
    return f" AND kind IN ({','.join('?' * len(ordered))})", ordered


async def read_after(
    conn: aiosqlite.Connection,
    *,
    after_seq: int,
    kinds: frozenset[str] | None,
    limit: int,
    last_seq: int,
    window: int = WINDOW,
) -> OutboxRead:
    """At most `limit` rows of `kinds` after `after_seq`, up to `last_seq` (the committed tip), in store
    order. With a kinds filter it scans windows of store_seq, so no statement is unbounded."""
    if limit < 1 or limit > MAX_LIMIT:
        raise ValueError(f"outbox read: limit must be 1..{MAX_LIMIT}, got {limit}")
    if kinds is None:
        rows = await conn.execute_fetchall(
            "SELECT store_seq, received_ns, envelope FROM events WHERE store_seq > ? AND store_seq <= ? "
            "ORDER BY store_seq LIMIT ?",
            (after_seq, last_seq, limit),
        )
        out: list[Row] = [(int(s), int(r), bytes(e)) for s, r, e in rows]
        scanned = out[-1][0] if len(out) == limit else last_seq
        return OutboxRead(out, max(scanned, after_seq))
    if not kinds:
        return OutboxRead([], max(after_seq, last_seq))
    clause, params = _kinds_clause(kinds)
    out = []
    low = after_seq
    while low < last_seq and len(out) < limit:
        high = min(low + window, last_seq)
        rows = await conn.execute_fetchall(
            f"SELECT store_seq, received_ns, envelope FROM events WHERE store_seq > ? AND store_seq <= ?"
            f"{clause} ORDER BY store_seq LIMIT ?",
            (low, high, *params, limit - len(out)),
        )
        out += [(int(s), int(r), bytes(e)) for s, r, e in rows]
        low = high
    scanned = out[-1][0] if len(out) == limit else max(low, after_seq)
    return OutboxRead(out, scanned)


async def read_range(
    conn: aiosqlite.Connection, *, first_seq: int, last_seq: int, kinds: frozenset[str] | None
) -> list[Row]:
    """The rows of `kinds` with store_seq in first_seq..last_seq, in store order (a sealed batch's)."""
    clause, params = _kinds_clause(kinds)
    rows = await conn.execute_fetchall(
        f"SELECT store_seq, received_ns, envelope FROM events WHERE store_seq >= ? AND store_seq <= ?"
        f"{clause} ORDER BY store_seq",
        (first_seq, last_seq, *params),
    )
    return [(int(s), int(r), bytes(e)) for s, r, e in rows]


#: (store_seq, source, event_id, kind, origin): what identifies one row, without its envelope.
RowKey = tuple[int, str, str, str, str]


async def read_keys(conn: aiosqlite.Connection, *, first_seq: int, last_seq: int) -> list[RowKey]:
    """The keys of the rows with store_seq in first_seq..last_seq, in store order (a sink that names
    each event, as the NATS forwarder does, reads them beside the envelopes instead of decoding those)."""
    rows = await conn.execute_fetchall(
        "SELECT store_seq, source, event_id, kind, origin FROM events WHERE store_seq >= ? AND store_seq <= ? "
        "ORDER BY store_seq",
        (first_seq, last_seq),
    )
    return [(int(q), str(s), str(e), str(k), str(o)) for q, s, e, k, o in rows]


async def cursor(conn: aiosqlite.Connection, name: str) -> SinkCursor | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT name, store_seq, kinds, enabled, updated_ns, remote_seq FROM sink_cursors WHERE name = ?",
            (name,),
        )
    )
    if not rows:
        return None
    n, seq, kinds, enabled, updated, remote = rows[0]
    return SinkCursor(
        str(n),
        int(seq),
        decode_kinds(kinds),
        bool(enabled),
        int(updated),
        None if remote is None else int(remote),
    )


async def sealed_batches(conn: aiosqlite.Connection, sink: str) -> list[SealedBatch]:
    """Every sealed batch of `sink` still kept (the unacked ones, and the newest), oldest first."""
    rows = await conn.execute_fetchall(
        "SELECT sink, first_seq, last_seq, events, kinds, prev_digest, digest, sealed_ns FROM outbox_batches "
        "WHERE sink = ? ORDER BY first_seq",
        (sink,),
    )
    return [
        SealedBatch(str(s), int(f), int(la), int(n), decode_kinds(k), bytes(p), bytes(d), int(t))
        for s, f, la, n, k, p, d, t in rows
    ]


# ---------------------------------------------------------------------- retention (maintenance)


async def acked_seq(conn: aiosqlite.Connection, *, last_seq: int, scan: int) -> int:
    """The highest store_seq S such that every row up to S is acked by every enabled sink (rows not of
    a sink's kinds count as acked by it). A sink with a kinds filter is judged over at most `scan`
    rows after its cursor: what lies beyond waits for the next pass."""
    acked = last_seq
    sinks = await conn.execute_fetchall("SELECT store_seq, kinds FROM sink_cursors WHERE enabled = 1")
    for seq, kinds_text in sinks:
        seq = int(seq)
        if seq >= acked:
            continue
        kinds = decode_kinds(kinds_text)
        if kinds is None:
            acked = min(acked, seq)
            continue
        rows = list(
            await conn.execute_fetchall(
                "SELECT store_seq, kind FROM events WHERE store_seq > ? ORDER BY store_seq LIMIT ?",
                (seq, scan),
            )
        )
        reach = int(rows[-1][0]) if len(rows) == scan else last_seq
        for row_seq, kind in rows:
            if kind in kinds:
                reach = int(row_seq) - 1
                break
        acked = min(acked, reach)
    return acked


@dataclass(frozen=True, slots=True)
class Span:
    """Rows about to be dropped that no sink has sent: how many, the first's store_seq and ts_ns."""

    rows: int
    first_seq: int
    first_ts_ns: int


async def unsent_span(conn: aiosqlite.Connection, *, after_seq: int, upto_seq: int) -> Span | None:
    """The rows after_seq+1..upto_seq (not sent by every sink), or None when no sink is enabled
    (then nothing is ever sent and every row dropped is lost)."""
    if not await conn.execute_fetchall("SELECT 1 FROM sink_cursors WHERE enabled = 1 LIMIT 1"):
        return None
    rows, first_seq, first_ts = await fetch_one(
        conn,
        "SELECT COUNT(*), MIN(store_seq), MIN(ts_ns) FROM events WHERE store_seq > ? AND store_seq <= ?",
        (after_seq, upto_seq),
    )
    return Span(int(rows), int(first_seq or 0), int(first_ts or 0))


@dataclass(frozen=True, slots=True)
class UnsentLosses:
    """LossReports of the store's own that no sink has sent yet, about to be dropped themselves."""

    reports: int = 0  # how many
    count: int = 0  # the events they report lost
    range_start: int = 0  # 0: none
    window_start_ns: int = 0


async def unsent_losses(
    conn: aiosqlite.Connection, *, source: str, after_seq: int, upto_seq: int
) -> UnsentLosses:
    """What the store's own LossReports (of `source`) with store_seq in after_seq+1..upto_seq report:
    the hard cap folds them into the LossReport of its drop, so what no sink sent is not lost twice."""
    rows = await conn.execute_fetchall(
        "SELECT envelope FROM events WHERE kind = 'loss' AND store_seq > ? AND store_seq <= ? AND source = ?",
        (after_seq, upto_seq, source),
    )
    reports = count = 0
    start = window = 0
    for (raw,) in rows:
        loss = events_pb2.Envelope.FromString(bytes(raw)).loss
        reports += 1
        count += loss.count
        if loss.range_start and (not start or loss.range_start < start):
            start = loss.range_start
        if loss.window_start_ns and (not window or loss.window_start_ns < window):
            window = loss.window_start_ns
    return UnsentLosses(reports, count, start, window)


# ---------------------------------------------------------------------- waking sinks


class CommitSignal:
    """Wakes whoever waits for the next group commit (the writer calls `notify` after each one)."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def notify(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Return after the next commit."""
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)
