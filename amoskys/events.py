"""Envelope identity: UUIDv7 event ids, per-boot sequence numbers, and body kind names."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

from amoskys.proto import events_pb2

#: The body kinds, in field order: the `kind` column of the store and the NATS subject part.
KINDS: tuple[str, ...] = tuple(f.name for f in events_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields)

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Uniqueness, not secrecy, is what the random bits are for: a fast generator seeded from the OS
# (a per-call os.urandom costs a system call per event on the hot path).
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


def uuid7() -> str:
    """A UUIDv7 string (RFC 9562): 48-bit Unix ms, then a 12-bit counter that keeps ids made in
    the same millisecond in order, then 62 random bits."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one ms: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | _rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def kind_of(envelope: events_pb2.Envelope) -> str:
    """The body kind of an envelope ('process', 'flow', ...), or '' when it has no body."""
    return envelope.WhichOneof("body") or ""


class EnvelopeStamper:
    """Stamps envelopes of one publisher process: source, boot_id and a gap-free source_seq."""

    def __init__(self, source: str, boot_id: str | None = None) -> None:
        self.source = source
        self.boot_id = boot_id or str(uuid.uuid4())
        self._seq = 0

    def stamp(self, envelope: events_pb2.Envelope, ts_ns: int | None = None) -> events_pb2.Envelope:
        """Fill identity fields in place (ts_ns only when the caller knows no better) and return it."""
        self._seq += 1
        envelope.event_id = uuid7()
        envelope.source = self.source
        envelope.boot_id = self.boot_id
        envelope.source_seq = self._seq
        if ts_ns is not None:
            envelope.ts_ns = ts_ns
        elif not envelope.ts_ns:
            envelope.ts_ns = time.time_ns()
        return envelope
