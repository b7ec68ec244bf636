"""Reading the committed log for the detections: the keys of the rows after their position (to confirm
what the live fan-out delivered and find what it did not), and the envelopes of the missed ones.

Plain rows on the store's read connection, in short statements over bounded windows of store_seq; no
protobuf decoding (that happens in the evaluation thread).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

#: The event kinds the rules are evaluated on (process_creation from process events, network_connection
#: from flows).
KINDS = ("process", "flow")
#: store_seq values one statement scans at most.
WINDOW = 65_536
#: Envelopes fetched per statement.
FETCH_CHUNK = 500


@dataclass(frozen=True, slots=True)
class LogKey:
    store_seq: int
    source: str
    event_id: str
    origin: str
    received_ns: int


@dataclass(frozen=True, slots=True)
class KeysRead:
    """Keys of the rows of KINDS after a position, and how far the read looked (every row up to
    `scanned_to` not in `keys` is of another kind, or gone)."""

    keys: list[LogKey]
    scanned_to: int
    first_seq: int  # the oldest row still stored (0: none): rows below it were pruned


async def read_keys(conn: aiosqlite.Connection, *, after_seq: int, upto_seq: int, limit: int) -> KeysRead:
    """At most `limit` keys of rows of KINDS with after_seq < store_seq <= upto_seq, in store order."""
    first = list(await conn.execute_fetchall("SELECT MIN(store_seq) FROM events"))
    first_seq = int(first[0][0] or 0) if first else 0
    keys: list[LogKey] = []
    low = after_seq
    while low < upto_seq and len(keys) < limit:
        high = min(low + WINDOW, upto_seq)
        rows = await conn.execute_fetchall(
            "SELECT store_seq, source, event_id, origin, received_ns FROM events "
            "WHERE store_seq > ? AND store_seq <= ? AND kind IN ('process', 'flow') ORDER BY store_seq LIMIT ?",
            (low, high, limit - len(keys)),
        )
        keys += [LogKey(int(s), str(src), str(eid), str(o), int(r)) for s, src, eid, o, r in rows]
        low = high
    scanned = keys[-1].store_seq if len(keys) >= limit else max(low, after_seq)
    return KeysRead(keys, scanned, first_seq)


async def read_envelopes(conn: aiosqlite.Connection, seqs: list[int]) -> list[bytes]:
    """The serialized envelopes of these rows, in the order given (a row gone meanwhile is left out)."""
    found: dict[int, bytes] = {}
    for i in range(0, len(seqs), FETCH_CHUNK):
        chunk = seqs[i : i + FETCH_CHUNK]
        rows = await conn.execute_fetchall(
            f"SELECT store_seq, envelope FROM events WHERE store_seq IN ({','.join('?' * len(chunk))})", chunk
        )
        found.update((int(s), bytes(e)) for s, e in rows)
    return [found[s] for s in seqs if s in found]
