"""Per-event validation of envelopes arriving at the bus: parse, check identity fields, name the reason."""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from amoskys.proto import events_pb2

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Every reason an event can be rejected for (bounded: they label a metric).
REASONS = (
    "malformed_envelope",
    "missing_event_id",
    "bad_event_id",
    "missing_source",
    "source_not_sender",
    "missing_boot_id",
    "bad_source_seq",
    "missing_body",
    "bad_ts",
)

INT64_MAX = 2**63 - 1
MAX_FUTURE_SKEW_NS = 300 * 1_000_000_000  # flag (not reject) events more than 5 min in the future


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str


def parse_event(raw: bytes) -> events_pb2.Envelope | None:
    try:
        return events_pb2.Envelope.FromString(raw)
    except DecodeError:
        return None


def check(envelope: events_pb2.Envelope, *, sender: str | None) -> str | None:
    """The rejection reason for one parsed envelope, or None when it is acceptable.

    `sender` is the authenticated publisher; None for a relay (any source allowed) or for the
    appliance's own collectors.
    """
    if not envelope.event_id:
        return "missing_event_id"
    if not _UUID.fullmatch(envelope.event_id):
        return "bad_event_id"
    if not envelope.source:
        return "missing_source"
    if sender is not None and envelope.source != sender:
        return "source_not_sender"
    if not envelope.boot_id:
        return "missing_boot_id"
    if not 1 <= envelope.source_seq <= INT64_MAX:  # the store keeps it in a signed 64-bit column
        return "bad_source_seq"
    if envelope.WhichOneof("body") is None:
        return "missing_body"
    if envelope.ts_ns <= 0:
        return "bad_ts"
    return None
