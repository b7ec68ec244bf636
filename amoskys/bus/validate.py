"""Per-event validation of envelopes arriving at the bus: parse, check identity fields, name the reason.

Each event is judged on its own: a rejected one is reported by index and reason in the ack and counted
(`amoskys_bus_events_total{outcome="rejected",reason=...}`), and the rest of its batch goes on. An
event larger than `[bus] max_event_bytes` is `event_too_large` without being parsed (the bus checks it).

Who may say what (DESIGN §4, §8): no remote publisher may use the appliance's own name as `source`
(`reserved_source`, compared ignoring case); an agent speaks only for itself (`source_not_sender`) and
never sends AuditEvents (`kind_not_allowed`: audit comes only from the appliance's in-process path);
a relay may forward any kind for other sources, and the bus records it as the events' origin.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from amoskys.pki.names import is_valid_name
from amoskys.proto import events_pb2

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Every reason an event can be rejected for (bounded: they label a metric).
REASONS = (
    "malformed_envelope",
    "missing_event_id",
    "bad_event_id",
    "missing_source",
    "bad_source",
    "reserved_source",
    "source_not_sender",
    "missing_boot_id",
    "bad_source_seq",
    "missing_body",
    "bad_ts",
    "kind_not_allowed",
    "event_too_large",
    "denied_source",
)

#: The serialized envelope is larger than `[bus] max_event_bytes` (checked before it is parsed).
EVENT_TOO_LARGE = "event_too_large"

#: Body kinds only a relay (or the appliance itself) may send: an agent never speaks for the audit log.
RELAY_ONLY_KINDS = frozenset({"audit"})

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


@functools.lru_cache(maxsize=4096)
def _source_problem(source: str, sender: str, relay: bool, reserved_source: str) -> str | None:
    """Whether a remote `sender` may speak as `source` (memoized: a batch repeats one or a few sources,
    and this ran per event)."""
    if not is_valid_name(source):  # no look-alikes: spaces, control or non-ASCII characters
        return "bad_source"
    if reserved_source and source.lower() == reserved_source.lower():
        return "reserved_source"
    if not relay and source != sender:
        return "source_not_sender"
    return None


def check(
    envelope: events_pb2.Envelope,
    *,
    sender: str | None,
    relay: bool = False,
    reserved_source: str = "",
) -> str | None:
    """The rejection reason for one parsed envelope, or None when it is acceptable.

    `sender` is the authenticated remote publisher, None for the appliance's own collectors (no
    restriction on who they speak for). `relay` lets a remote sender speak for other sources and send
    every kind. `reserved_source` is the appliance's own name: no remote event may carry it (ignoring
    case), so nothing remote is ever shown as the appliance's own.
    """
    return check_fields(
        envelope.event_id,
        envelope.source,
        envelope.boot_id,
        envelope.source_seq,
        envelope.WhichOneof("body"),
        envelope.ts_ns,
        sender=sender,
        relay=relay,
        reserved_source=reserved_source,
    )


def check_fields(
    event_id: str,
    source: str,
    boot_id: str,
    source_seq: int,
    kind: str | None,
    ts_ns: int,
    *,
    sender: str | None,
    relay: bool = False,
    reserved_source: str = "",
) -> str | None:
    """`check` on an envelope's identity fields read once (the bus reads them for the Record too)."""
    if not event_id:
        return "missing_event_id"
    if not _UUID.fullmatch(event_id):
        return "bad_event_id"
    if not source:
        return "missing_source"
    if sender is not None:
        problem = _source_problem(source, sender, relay, reserved_source)
        if problem is not None:
            return problem
    if not boot_id:
        return "missing_boot_id"
    if not 1 <= source_seq <= INT64_MAX:  # the store keeps it in a signed 64-bit column
        return "bad_source_seq"
    if kind is None:
        return "missing_body"
    if ts_ns <= 0:
        return "bad_ts"
    if sender is not None and not relay and kind in RELAY_ONLY_KINDS:
        return "kind_not_allowed"
    return None
