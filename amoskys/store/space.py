"""The space ladder (DESIGN §5): measure, decide the state, and delete prefixes of the log.

used bytes = live pages of the database file ((page_count - freelist_count) × page_size) + the size of
the -wal file. Free pages are reused before the file grows, so they do not count; incremental vacuum
returns them to the file system when they pile up. Measuring is two PRAGMAs and one stat(), never a
scan: between measurements the writer adds an estimate per committed row.

States: ok → high_water (remote publishers get RETRY) → hard_cap (the oldest rows are dropped and a
LossReport says which). Leaving high_water needs used < 95% of the mark, so the state does not flap.
"""

from __future__ import annotations

import asyncio
import enum
import os
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from amoskys.store import alerts
from amoskys.store.sql import fetch_one
from amoskys.store.views import ROW_TABLES

#: Leave high_water only below this fraction of the mark.
HYSTERESIS = 0.95
#: At the hard cap, drop down to this fraction of it.
HARD_CAP_TARGET = 0.98


class SpaceState(enum.Enum):
    OK = "ok"
    HIGH_WATER = "high_water"
    HARD_CAP = "hard_cap"


@dataclass(frozen=True, slots=True)
class SpaceMeasure:
    db_bytes: int  # the database file (page_count × page_size)
    free_bytes: int  # free pages inside it
    wal_bytes: int  # the -wal file

    @property
    def used_bytes(self) -> int:
        return self.db_bytes - self.free_bytes + self.wal_bytes


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of the store's size and state (`Store.stats()`)."""

    rows: int
    first_seq: int  # 0 when the log is empty
    last_seq: int  # the highest store_seq ever assigned
    db_bytes: int
    wal_bytes: int
    free_bytes: int
    used_bytes: int  # what the space ladder compares with its marks
    space_state: SpaceState
    high_water_bytes: int
    hard_cap_bytes: int
    queue_events: int
    synthetic_rows: int = 0  # of `rows`, published by loadgen identities


class SpaceLadder:
    """Which rung the store is on, from measured (or estimated) used bytes."""

    def __init__(self, high_water_bytes: int, hard_cap_bytes: int) -> None:
        self.high_water_bytes = high_water_bytes
        self.hard_cap_bytes = hard_cap_bytes
        self.state = SpaceState.OK

    def decide(self, used_bytes: int) -> SpaceState:
        """Move to the state `used_bytes` calls for (with hysteresis below high water) and return it."""
        if used_bytes >= self.hard_cap_bytes:
            self.state = SpaceState.HARD_CAP
        elif used_bytes >= self.high_water_bytes:
            self.state = SpaceState.HIGH_WATER
        elif self.state is SpaceState.OK or used_bytes < self.high_water_bytes * HYSTERESIS:
            self.state = SpaceState.OK
        else:
            self.state = SpaceState.HIGH_WATER
        return self.state

    def next_threshold(self) -> int:
        """The used bytes at which the state would climb a rung (checked against the estimate)."""
        if self.state is SpaceState.OK:
            return self.high_water_bytes
        return self.hard_cap_bytes

    @property
    def hard_cap_target(self) -> int:
        return int(self.hard_cap_bytes * HARD_CAP_TARGET)


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


async def measure(conn: aiosqlite.Connection, wal_path: Path) -> SpaceMeasure:
    """Measure the store's files: page counts from SQLite, the -wal size from stat()."""
    rows, wal_bytes = await asyncio.gather(
        fetch_one(
            conn,
            "SELECT page_count, freelist_count, page_size FROM pragma_page_count, pragma_freelist_count, "
            "pragma_page_size",
        ),
        asyncio.to_thread(_file_size, wal_path),
    )
    page_count, freelist, page_size = rows
    return SpaceMeasure(db_bytes=page_count * page_size, free_bytes=freelist * page_size, wal_bytes=wal_bytes)


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows deleted from the front of the log in one step."""

    count: int
    first_seq: int
    last_seq: int
    first_ts_ns: int
    last_ts_ns: int
    marks: list[tuple[int, str, str]]  # (highest source_seq deleted, source, boot_id)
    synthetic: int = 0  # of `count`, rows of loadgen identities


NOTHING_PRUNED = Pruned(0, 0, 0, 0, 0, [])


async def retention_boundary(
    conn: aiosqlite.Connection, *, cutoff_ns: int, acked_seq: int, limit: int
) -> int:
    """The highest store_seq S such that every row up to S (at most `limit` rows) was received before
    `cutoff_ns` and is at or below `acked_seq`; 0 when the first row does not qualify."""
    rows = await conn.execute_fetchall(
        "SELECT store_seq, received_ns FROM events WHERE store_seq <= ? ORDER BY store_seq LIMIT ?",
        (acked_seq, limit),
    )
    boundary = 0
    for seq, received_ns in rows:
        if received_ns >= cutoff_ns:
            break
        boundary = seq
    return boundary


async def oldest_boundary(conn: aiosqlite.Connection, count: int) -> int:
    """The store_seq of the `count`-th oldest row (the newest row when there are fewer)."""
    for (seq,) in await conn.execute_fetchall(
        "SELECT store_seq FROM events ORDER BY store_seq LIMIT 1 OFFSET ?", (max(count - 1, 0),)
    ):
        return int(seq)
    (last,) = await fetch_one(conn, "SELECT MAX(store_seq) FROM events")
    return int(last or 0)


async def prune_prefix(conn: aiosqlite.Connection, upto_seq: int) -> Pruned:
    """Delete every row with store_seq <= `upto_seq` (and the read model's rows of those events),
    inside the caller's transaction, and raise the pruned_seq marks of the boots they came from (so
    their replays are still recognised)."""
    summary = await fetch_one(
        conn,
        "SELECT COUNT(*), MIN(store_seq), MAX(store_seq), MIN(ts_ns), MAX(ts_ns) FROM events WHERE store_seq <= ?",
        (upto_seq,),
    )
    count = int(summary[0])
    if count == 0:
        return NOTHING_PRUNED
    marks = [
        (int(top), source, boot)
        for source, boot, top in await conn.execute_fetchall(
            "SELECT source, boot_id, MAX(source_seq) FROM events WHERE store_seq <= ? GROUP BY source, boot_id",
            (upto_seq,),
        )
    ]
    (synthetic,) = await fetch_one(  # on the partial index: as many steps as synthetic rows go
        conn, "SELECT COUNT(*) FROM events WHERE synthetic = 1 AND store_seq <= ?", (upto_seq,)
    )
    # evidence of alerts not resolved yet outlives its events (amoskys.store.alerts), and so do their rows
    await conn.execute(alerts.KEEP_EVIDENCE, (upto_seq,))
    await conn.execute("DELETE FROM events WHERE store_seq <= ?", (upto_seq,))
    for table in ROW_TABLES:  # the read model's rows go with their events
        if table == "alerts":
            await conn.execute(alerts.DELETE_CLOSED_ALERTS, (upto_seq,))
        else:
            await conn.execute(f"DELETE FROM {table} WHERE store_seq <= ?", (upto_seq,))
    await conn.execute(alerts.FORGET_EVIDENCE)
    await conn.executemany(
        "UPDATE source_marks SET pruned_seq = MAX(pruned_seq, ?) WHERE source = ? AND boot_id = ?", marks
    )
    return Pruned(
        count, int(summary[1]), int(summary[2]), int(summary[3]), int(summary[4]), marks, int(synthetic)
    )
