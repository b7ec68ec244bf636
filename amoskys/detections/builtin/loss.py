"""Any LossReport: events, packets, flows or rows lost somewhere, and why."""

from __future__ import annotations

from amoskys.detections.builtin.finding import Detector, Finding, builtin_rule
from amoskys.proto import events_pb2

RULE = builtin_rule(
    "loss",
    "Data lost",
    "medium",
    description="A LossReport: what was lost, where, how many and why.",
)


class Loss(Detector):
    name = "loss"
    rules = (RULE,)
    kinds = frozenset({"loss"})

    def event(self, envelope: events_pb2.Envelope, now_ns: int) -> list[Finding]:
        r = envelope.loss
        return [
            Finding(
                RULE,
                envelope.source,
                envelope.ts_ns,
                f"{r.count} {r.what or 'items'} lost in {r.where or '?'}"
                + (f": {r.reason}" if r.reason else ""),
                {"what": r.what, "where": r.where, "count": str(r.count), "reason": r.reason},
                evidence=envelope.event_id,
            )
        ]
