"""The chain digest over the event log: digest(n) = SHA-256(digest(n-1) || envelope(n)) in store_seq order.

Only the envelope bytes are chained (exactly as received), so anyone holding the exported envelopes
and one trusted digest can recompute the chain. Retention and the hard cap delete the oldest rows:
verification then starts from the stored digest of the first remaining row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import aiosqlite

_sha256 = hashlib.sha256


def next_digest(prev: bytes, envelope: bytes) -> bytes:
    """The digest of a row whose predecessor's digest is `prev`."""
    return _sha256(prev + envelope).digest()


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The result of verifying the chain over a range of rows."""

    checked: int  # rows whose digest was recomputed
    first_seq: int  # first store_seq looked at (its digest is trusted as the anchor), 0 when empty
    last_seq: int  # last store_seq looked at
    bad_seq: int | None  # first store_seq whose digest does not match, None when all match

    @property
    def ok(self) -> bool:
        return self.bad_seq is None


async def verify_chain(conn: aiosqlite.Connection, *, after_seq: int = 0, page: int = 5000) -> ChainCheck:
    """Recompute the chain over every row after `after_seq`, in pages of short read transactions.

    The first row read is the anchor: its stored digest is trusted and each later row must chain
    onto its predecessor.
    """
    prev: bytes | None = None
    first = last = checked = 0
    cursor_seq = after_seq
    while True:
        rows = await conn.execute_fetchall(
            "SELECT store_seq, envelope, digest FROM events WHERE store_seq > ? ORDER BY store_seq LIMIT ?",
            (cursor_seq, page),
        )
        if not rows:
            break
        for seq, envelope, digest in rows:
            if prev is None:
                first = seq
            elif next_digest(prev, envelope) != digest:
                return ChainCheck(checked=checked, first_seq=first, last_seq=seq, bad_seq=seq)
            else:
                checked += 1
            prev = digest
            last = seq
        cursor_seq = last
    return ChainCheck(checked=checked, first_seq=first, last_seq=last, bad_seq=None)
