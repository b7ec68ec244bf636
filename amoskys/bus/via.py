"""Which sender each remote source arrives through: a source seen through two senders is reported.

An event's origin (`events.origin`) is the enrolled identity whose signed batch carried it: the agent
itself, or a relay (a site appliance forwarding its agents' events). One source arriving through two
different senders — directly and through a relay, or through two relays — means a duplicated or
misrouted feed, or an identity speaking for a source it should not: the bus raises an Alert, once per
(source, sender) pair. The first sender of each source is kept in memory (bounded, least recently
seen forgotten first), so after a restart the first sender seen counts as the first again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

#: Sources remembered at most (a few MB at most).
MAX_SOURCES = 100_000


class ViaTracker:
    def __init__(self, max_sources: int = MAX_SOURCES) -> None:
        self._first: OrderedDict[str, str] = OrderedDict()
        self._reported: set[tuple[str, str]] = set()
        self._max = max_sources

    def note(self, sender: str, sources: Iterable[str]) -> list[tuple[str, str]]:
        """Record that `sender` carried events of `sources`; return (source, first sender) for each
        source newly seen through a second sender."""
        conflicts: list[tuple[str, str]] = []
        first = self._first
        for source in sources:
            known = first.get(source)
            if known is None:
                first[source] = sender
                if len(first) > self._max:
                    first.popitem(last=False)
                continue
            first.move_to_end(source)
            if known != sender and (source, sender) not in self._reported:
                self._reported.add((source, sender))
                conflicts.append((source, known))
        return conflicts
