"""The values handed to the store and read back from it: Record, Outcome, StoredEvent."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from amoskys.proto import events_pb2


class Record(msgspec.Struct, frozen=True):
    """One event handed to the store (a msgspec Struct: built once per event on the ingest path, where
    a frozen dataclass's __init__ cost 1.5 µs and this costs 0.1 µs). `envelope` is stored exactly as received (never re-serialized);
    `parsed`, when the caller already has it, saves a re-parse for the derived views. `origin` is the
    enrolled identity the event came through (set by the bus, never by the publisher); empty for the
    appliance's own, in-process events. `synthetic` says that identity is enrolled with the loadgen
    role (also set by the bus)."""

    source: str
    event_id: str
    boot_id: str
    source_seq: int
    kind: str
    ts_ns: int
    envelope: bytes
    parsed: events_pb2.Envelope | None = None
    origin: str = ""
    synthetic: bool = False

    @classmethod
    def from_envelope(
        cls,
        envelope: events_pb2.Envelope,
        data: bytes | None = None,
        *,
        origin: str = "",
        synthetic: bool = False,
    ) -> Record:
        """A Record for `envelope`; `data` are its bytes as received (serialized here when None);
        `origin` the authenticated remote sender ("" for in-process events); `synthetic` whether
        that sender is a loadgen identity."""
        return cls(
            source=envelope.source,
            event_id=envelope.event_id,
            boot_id=envelope.boot_id,
            source_seq=envelope.source_seq,
            kind=envelope.WhichOneof("body") or "",
            ts_ns=envelope.ts_ns,
            envelope=envelope.SerializeToString() if data is None else data,
            parsed=envelope,
            origin=origin,
            synthetic=synthetic,
        )


_INT64_MAX = (1 << 63) - 1


def check_record(record: Record) -> str | None:
    """Why the store cannot take `record` (a short reason), or None when it can.

    `Store.submit` raises ValueError for such a record; a caller judging remote events one by one
    (the bus) should reject them with this reason before submitting.
    """
    if not isinstance(record, Record):
        return "not_a_record"
    if type(record.envelope) is not bytes:
        return "envelope_not_bytes"
    if not record.source or type(record.source) is not str:
        return "missing_source"
    if not record.event_id or type(record.event_id) is not str:
        return "missing_event_id"
    if type(record.boot_id) is not str or type(record.kind) is not str or type(record.origin) is not str:
        return "bad_identity_fields"
    if type(record.synthetic) is not bool:
        return "bad_identity_fields"
    if type(record.source_seq) is not int or not 0 <= record.source_seq <= _INT64_MAX:
        return "source_seq_out_of_range"  # SQLite integers are signed 64-bit
    if type(record.ts_ns) is not int or not -_INT64_MAX <= record.ts_ns <= _INT64_MAX:
        return "ts_out_of_range"
    return None


class Outcome(enum.Enum):
    """What the store did with one submitted event."""

    COMMITTED = "committed"  # stored now, durably (the COMMIT returned)
    DUPLICATE = "duplicate"  # already stored (same source and event_id), or a replay older than retention


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the event log. `origin` is "" for the appliance's own events, else the enrolled
    identity (agent or relay) that sent it; `synthetic` is 1 when that identity is a loadgen one."""

    store_seq: int
    event_id: str
    source: str
    boot_id: str
    source_seq: int
    kind: str
    ts_ns: int
    received_ns: int
    envelope: bytes
    digest: bytes
    origin: str = ""
    synthetic: int = 0

    @property
    def remote(self) -> bool:
        """Whether the event came from outside this appliance (through the bus)."""
        return bool(self.origin)

    def parse(self) -> events_pb2.Envelope:
        """The envelope as a message (raises google.protobuf.message.DecodeError when malformed)."""
        return events_pb2.Envelope.FromString(self.envelope)
