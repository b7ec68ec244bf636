"""Walking table columns with GETBULK, pure: which OIDs to ask for next, and what came back.

Every request carries sysUpTime as its one non-repeater, so each cell is stamped with the uptime of
the response that carried it (rates use that, not the time of another request). The repeaters are
the columns still being walked, each from the last OID seen in it; a response is read row by row
(RFC 3416 §4.2.3), and may be cut short by the agent (fewer repetitions, or a partial last row).
A column ends when it leaves its subtree, reaches endOfMibView, or stops increasing (a broken agent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from amoskys.collectors.snmp.oids import Oid

#: A cell of a walked column: (value, sysUpTime ticks of its response).
Cell = tuple[object, int]
#: Walked columns: column name → row index (the OID suffix) → cell.
Columns = dict[str, dict[Oid, Cell]]


class EndOfMibView:
    """The value an agent returns past the last OID it has (also noSuchObject/noSuchInstance)."""

    def __repr__(self) -> str:
        return "END_OF_MIB_VIEW"


END = EndOfMibView()


class ColumnWalk:
    """The state of one multi-column walk: feed it responses until ``done``."""

    def __init__(self, columns: Mapping[str, Oid]) -> None:
        self.bases = dict(columns)
        self.next_oid: dict[str, Oid] = dict(columns)  # the active columns, in request order
        self.cells: Columns = {name: {} for name in columns}
        self.requests = 0
        self.varbinds = 0

    @property
    def done(self) -> bool:
        return not self.next_oid

    def request(self) -> list[tuple[str, Oid]]:
        """The (column, start OID) repeaters of the next request, in order."""
        return list(self.next_oid.items())

    def feed(
        self, asked: Sequence[tuple[str, Oid]], ticks: int, varbinds: Iterable[tuple[Oid, object]]
    ) -> None:
        """Read one response to the repeaters `asked` (the non-repeater already taken off)."""
        self.requests += 1
        width = len(asked)
        ended: set[str] = set()
        progressed = False
        for position, (name_oid, value) in enumerate(varbinds):
            self.varbinds += 1
            column = asked[position % width][0]
            if column in ended or column not in self.next_oid:
                continue
            base = self.bases[column]
            if value is END or name_oid[: len(base)] != base or len(name_oid) <= len(base):
                ended.add(column)
                continue
            if name_oid <= self.next_oid[column]:  # not increasing: never loop on a broken agent
                ended.add(column)
                continue
            self.cells[column][name_oid[len(base) :]] = (value, ticks)
            self.next_oid[column] = name_oid
            progressed = True
        for column in ended:
            self.next_oid.pop(column, None)
        if not progressed and not ended:
            # an empty response (or only the non-repeater): nothing more will come
            self.next_oid.clear()
