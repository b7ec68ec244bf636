"""How rows taken from the fleet's NATS stream are marked in the store: their origin.

An event the hub consumed is stored with the origin ``nats:<box>`` (the box whose subject carried it;
`Record.origin`, column ``events.origin``). Whatever reads the log and must leave such rows alone
tests it here: the NATS forwarder never publishes them back to the stream, and detections do not run
again on what a box already judged.
"""

from __future__ import annotations

#: The origin of every event the hub took from NATS starts with this.
NATS_ORIGIN_PREFIX = "nats:"


def nats_origin(box: str) -> str:
    """The origin (and the bus sender) of events that arrived through NATS from `box`."""
    return NATS_ORIGIN_PREFIX + box


def is_from_nats(origin: str) -> bool:
    """Whether a row with this origin came from the fleet's NATS stream."""
    return origin.startswith(NATS_ORIGIN_PREFIX)


def box_of(origin: str) -> str | None:
    """The box a NATS origin names (None for any other origin)."""
    return origin[len(NATS_ORIGIN_PREFIX) :] if is_from_nats(origin) else None
