"""An agent or appliance silent for [bus] silent_after_heartbeats of its heartbeat intervals — the
state the Agents page shows: no heartbeat received for longer than that many times the interval its
newest heartbeat announced (60 s when it announced none). Reported once per silence; a heartbeat ends
it. What was known at start comes from the store (the newest heartbeat of every source)."""

from __future__ import annotations

from dataclasses import dataclass

from amoskys.detections.builtin.finding import Detector, Finding, builtin_rule
from amoskys.proto import events_pb2

RULE = builtin_rule(
    "silent",
    "Agent or appliance silent",
    "high",
    description="No heartbeat received for silent_after_heartbeats of the source's heartbeat intervals.",
)
#: The interval assumed when a heartbeat does not say (as amoskys.web.routes.agents does).
DEFAULT_INTERVAL_SECONDS = 60.0
_NS = 1_000_000_000


@dataclass(slots=True)
class _Beat:
    received_ns: int
    interval_s: float
    event_id: str
    silent: bool = False


class Silent(Detector):
    name = "silent"
    rules = (RULE,)
    kinds = frozenset({"heartbeat"})

    def __init__(self, silent_after_heartbeats: int, *, ignore: frozenset[str] = frozenset()) -> None:
        self.after = silent_after_heartbeats
        self.ignore = ignore  # sources never judged (the appliance itself: its silence cannot be seen here)
        self.beats: dict[str, _Beat] = {}

    def seen(self, source: str, received_ns: int, interval_s: float, event_id: str) -> None:
        """A heartbeat of `source` received at `received_ns` (also: the newest stored one, at start)."""
        old = self.beats.get(source)
        if old is not None and old.received_ns > received_ns:
            return
        self.beats[source] = _Beat(received_ns, interval_s or DEFAULT_INTERVAL_SECONDS, event_id)

    def event(self, envelope: events_pb2.Envelope, now_ns: int) -> list[Finding]:
        self.seen(envelope.source, now_ns, envelope.heartbeat.interval_seconds, envelope.event_id)
        return []

    def tick(self, now_ns: int) -> list[Finding]:
        out: list[Finding] = []
        for source, beat in self.beats.items():
            if beat.silent or source in self.ignore:
                continue
            quiet_s = (now_ns - beat.received_ns) / _NS
            if quiet_s <= self.after * beat.interval_s:
                continue
            beat.silent = True
            out.append(
                Finding(
                    RULE,
                    source,
                    now_ns,
                    f"{source} silent for {quiet_s:.0f} s (heartbeat every {beat.interval_s:g} s, "
                    f"silent after {self.after})",
                    {
                        "silent_for_seconds": f"{quiet_s:.1f}",
                        "heartbeat_interval_seconds": f"{beat.interval_s:g}",
                        "silent_after_heartbeats": str(self.after),
                        "last_heartbeat_ns": str(beat.received_ns),
                    },
                    evidence=beat.event_id,
                )
            )
        return out
