"""The detections' own process table, per source: what a new process's parent runs (ParentImage,
ParentCommandLine), fed by the process events in log order — snapshots and execs add or replace an
entry, exits retire it.

A parent may exit between forking a child and the child's exec (a shell that backgrounds a command and
ends): an exited process stays findable for a while (the newest RETIRED_KEEP per source), until its pid
runs something new. Each source's table is bounded (MAX_PER_SOURCE live entries; the oldest go first):
a source that floods it costs itself parent names, never memory. Not thread-safe: one thread feeds
and reads it (the runtime's evaluation thread).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

#: Live processes kept per source (a box runs a few hundred to a few thousand).
MAX_PER_SOURCE = 32_768
#: Exited processes kept per source, for children that exec after their parent exited.
RETIRED_KEEP = 1024


@dataclass(frozen=True, slots=True)
class Program:
    """What one process runs: its executable and command line (as the collector sent them)."""

    exe: str
    argv: tuple[str, ...]
    start_time_ns: int


class _SourceTable:
    __slots__ = ("live", "retired")

    def __init__(self) -> None:
        self.live: OrderedDict[int, Program] = OrderedDict()
        self.retired: OrderedDict[int, Program] = OrderedDict()


class ProcessTables:
    """pid → Program per source."""

    def __init__(self, *, max_per_source: int = MAX_PER_SOURCE, retired_keep: int = RETIRED_KEEP) -> None:
        self._sources: dict[str, _SourceTable] = {}
        self._max = max_per_source
        self._retired_keep = retired_keep

    def __len__(self) -> int:
        return sum(len(t.live) for t in self._sources.values())

    def _table(self, source: str) -> _SourceTable:
        table = self._sources.get(source)
        if table is None:
            table = self._sources[source] = _SourceTable()
        return table

    def run(self, source: str, pid: int, program: Program) -> None:
        """`pid` of `source` runs `program` now (an exec, or seen in a snapshot)."""
        table = self._table(source)
        live = table.live
        live[pid] = program
        live.move_to_end(pid)
        table.retired.pop(pid, None)
        while len(live) > self._max:
            live.popitem(last=False)

    def exit(self, source: str, pid: int) -> None:
        """`pid` of `source` exited: kept among the retired until its pid is used again."""
        table = self._sources.get(source)
        if table is None:
            return
        program = table.live.pop(pid, None)
        if program is None:
            return
        retired = table.retired
        retired[pid] = program
        retired.move_to_end(pid)
        while len(retired) > self._retired_keep:
            retired.popitem(last=False)

    def get(self, source: str, pid: int) -> Program | None:
        """What `pid` of `source` runs (or ran, when it exited recently); None when unknown."""
        table = self._sources.get(source)
        if table is None:
            return None
        program = table.live.get(pid)
        return program if program is not None else table.retired.get(pid)
