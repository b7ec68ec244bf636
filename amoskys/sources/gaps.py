"""Gaps in what the hub receives: per (source, boot_id), source_seq numbers that never arrived.

A publisher numbers its events 1, 2, 3… per boot, over every kind. The hub sees all of a source's
numbers only when its subject filters take every kind of that source's subjects; otherwise the
numbers of the kinds it does not take are missing by design, and nothing is counted for that source
(`counted`). Numbers that arrive late (below the highest seen) fill nothing back: the count is of
numbers skipped when they were skipped, as the hub saw them. Bounded: the least recently seen
(source, boot) pairs are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

#: (source, boot_id) pairs remembered at most.
MAX_BOOTS = 100_000


class GapCounter:
    def __init__(self, max_boots: int = MAX_BOOTS) -> None:
        self._top: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._max = max_boots

    def note(self, source: str, boot_id: str, seq: int) -> int:
        """Record `seq` of (source, boot_id); return how many numbers it skipped past the highest
        seen before (0 for the first event of a boot seen by this process)."""
        key = (source, boot_id)
        top = self._top.get(key)
        if top is None:
            self._top[key] = seq
            if len(self._top) > self._max:
                self._top.popitem(last=False)
            return 0
        self._top.move_to_end(key)
        if seq <= top:
            return 0
        self._top[key] = seq
        return seq - top - 1
