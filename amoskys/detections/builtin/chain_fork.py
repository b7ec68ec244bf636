"""A fork in a sender's batch chain: a batch chaining to a predecessor that already has another
accepted successor (two histories of one sender; amoskys.bus.chain tells it). Only the bus sees
chains, so it raises this alert itself when it stores such a batch (amoskys.bus.service); this module
gives the alert its rule and its words."""

from __future__ import annotations

from amoskys.detections.builtin.finding import builtin_rule
from amoskys.proto import events_pb2
from amoskys.store.alerts import SEVERITY_OF_LEVEL

RULE = builtin_rule(
    "chain_fork",
    "Batch chain forked",
    "high",
    description="A sender's batch chains to a predecessor that already has another accepted successor: "
    "two publishers hold its key, or its store was restored from an old copy.",
)
#: The rule name older readers know this alert by.
LEGACY_RULE = "bus.chain_fork"


def fork_alert(sender: str, got: bytes, successor: bytes) -> events_pb2.Alert:
    """The Alert body for a fork of `sender`'s chain at predecessor `got` (whose accepted successor is
    `successor`). The publisher stamps it and sets alert_id to the event's own id."""
    a = events_pb2.Alert(
        rule=LEGACY_RULE,
        rule_id=RULE.id,
        title=RULE.title,
        level=events_pb2.Alert.LEVEL_HIGH,
        severity=SEVERITY_OF_LEVEL[RULE.level],  # type: ignore[arg-type]
        count=1,
        host=sender,
        summary=f"batch chain of {sender!r} forked: its predecessor already has another accepted successor",
    )
    a.attributes.update({"sender": sender, "prev_digest": got.hex(), "successor": successor.hex()})
    return a
