"""FlowStarts: the capture path telling in-process detectors about each new flow as it starts.

Flow records arrive when a flow ends or at its active timeout, up to minutes after its first packet;
detectors that judge connections (port scans, IOC addresses) need to know at once. The flow table
notes each flow it creates (its directional key, protocol, VLAN and first packet time: raw, nothing
decoded on the packet path); the flow collector hands each batch's notes here once per turn of its
loop, and a consumer (amoskys.detections.builtin) takes them with :meth:`FlowStarts.get_many` and
decodes them off the loop. Nothing here is stored or published.

Bounded: at most ``maxlen`` notes wait; beyond that new ones are dropped and counted. Only a capture
whose owner finds a consumer subscribed (:attr:`wanted`) notes anything at all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

#: Notes held for the consumer at most.
MAX_PENDING = 65_536


class FlowStartNote(NamedTuple):
    """One new flow as the table saw its first packet: ``key`` is the parser's directional key
    (source address, destination address, source port, destination port; raw bytes)."""

    key: bytes
    proto: int
    vlan: int  # outer VLAN tag (id in the low 12 bits) as the table keeps it, 0 when untagged
    ts_ns: int
    interface: str


class FlowStarts:
    """A bounded queue of flow-start notes from the capture to one consumer."""

    def __init__(self, maxlen: int = MAX_PENDING) -> None:
        self.maxlen = maxlen
        self._notes: deque[FlowStartNote] = deque()
        self._ready = asyncio.Event()
        self.consumers = 0
        self.offered = 0  # notes offered by captures
        self.dropped = 0  # notes dropped because the consumer fell `maxlen` behind
        self.captures = 0  # captures noting flow starts now

    @property
    def wanted(self) -> bool:
        """Whether a consumer takes notes (a capture notes nothing otherwise)."""
        return self.consumers > 0

    def subscribe(self) -> None:
        self.consumers += 1

    def unsubscribe(self) -> None:
        self.consumers = max(0, self.consumers - 1)
        if not self.consumers:
            self._notes.clear()

    def offer(self, interface: str, starts: Sequence[tuple[bytes, int, int, int]]) -> None:
        """A capture's new flows of one turn: (key, proto, vlan, first packet ts) each. Cheap: called
        on the loop once per batch of packets, never per packet."""
        if not starts or not self.consumers:
            return
        self.offered += len(starts)
        room = self.maxlen - len(self._notes)
        if room < len(starts):
            self.dropped += len(starts) - max(room, 0)
            starts = starts[: max(room, 0)]
        notes = self._notes
        for key, proto, vlan, ts in starts:
            notes.append(FlowStartNote(key, proto, vlan, ts, interface))
        if starts:
            self._ready.set()

    def __len__(self) -> int:
        return len(self._notes)

    def take(self, limit: int = 10_000) -> list[FlowStartNote]:
        """The oldest notes waiting, at most `limit`, without waiting."""
        notes = self._notes
        n = min(limit, len(notes))
        out = [notes.popleft() for _ in range(n)]
        if not notes:
            self._ready.clear()
        return out

    async def wait(self) -> None:
        """Until a note waits."""
        if not self._notes:
            self._ready.clear()
            await self._ready.wait()
