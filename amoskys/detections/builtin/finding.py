"""What every built-in detector shares: its rules, the findings it returns, the flow starts it is fed,
and the base class that gives every input a no-op default."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from amoskys.collectors.flow_starts import FlowStartNote
from amoskys.detections.sigma.model import Rule
from amoskys.proto import events_pb2

#: The category built-in alerts carry (Sigma rules carry process_creation or network_connection).
CATEGORY = "builtin"
#: Where every built-in rule id starts.
PREFIX = "amoskys."


def builtin_rule(
    name: str, title: str, level: str, *, tags: tuple[str, ...] = (), description: str = ""
) -> Rule:
    """The rule of a built-in detector: id ``amoskys.<name>``, shown and deduplicated like a Sigma rule."""
    return Rule(
        id=PREFIX + name,
        title=title,
        level=level,
        tags=tags,
        category=CATEGORY,
        description=description,
        path=Path(f"<builtin:{name}>"),
        status="stable",
        fields_used=(),
    )


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a detector found: raised as (or counted into) an alert of `rule` on `host`."""

    rule: Rule
    host: str  # the source whose events show it (the appliance for what its own collectors saw)
    ts_ns: int  # when it happened (from the data)
    summary: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    evidence: str = ""  # the event_id (of `host`) that shows it; "" when no stored event does
    key: str = ""  # what tells two findings without evidence apart (for the alert's id)


@dataclass(frozen=True, slots=True)
class FlowStart:
    """A flow as it starts (from the capture's flow-start notes) or as first recorded (a FlowRecord of
    a source whose capture is not in this process)."""

    host: str
    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    ts_ns: int
    interface: str = ""
    event_id: str = ""  # the FlowRecord's ("" for a flow-start note: nothing is stored)


def _addr(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def from_note(note: FlowStartNote, host: str) -> FlowStart:
    """Decode a capture's raw note (see amoskys.collectors.flow.parse.split_key for the key's layout)."""
    key = note.key
    a = (len(key) - 4) >> 1
    return FlowStart(
        host,
        _addr(key[:a]),
        _addr(key[a : 2 * a]),
        key[-4] << 8 | key[-3],
        key[-2] << 8 | key[-1],
        note.proto,
        note.ts_ns,
        note.interface,
    )


def from_record(envelope: events_pb2.Envelope) -> FlowStart:
    f = envelope.flow
    return FlowStart(
        envelope.source,
        f.src_addr,
        f.dst_addr,
        f.src_port,
        f.dst_port,
        f.protocol,
        f.first_ts_ns or envelope.ts_ns,
        f.interface,
        envelope.event_id,
    )


class Detector:
    """A built-in detector. Inputs it does not declare are never given to it. Every method runs in the
    detections' one worker thread (never on the event loop), so state needs no lock."""

    name: ClassVar[str]
    rules: ClassVar[tuple[Rule, ...]]
    #: the envelope bodies it reads (Envelope.WhichOneof("body") names)
    kinds: ClassVar[frozenset[str]] = frozenset()
    #: whether it judges connections (flow starts, or first FlowRecords of remote captures)
    flows: ClassVar[bool] = False

    def event(self, envelope: events_pb2.Envelope, now_ns: int) -> list[Finding]:
        return []

    def flow(self, start: FlowStart) -> list[Finding]:
        return []

    def tick(self, now_ns: int) -> list[Finding]:
        """Called about once a second (wall clock, UTC ns)."""
        return []


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
