"""The bridge forwarding table of one poll as SnmpFdbEntry messages, pure: which switch port (and
interface, and VLAN) each learned MAC address is behind.

Q-BRIDGE-MIB's dot1qTpFdbTable (indexed by FDB id and MAC) is read where the agent has it; a MAC only
in BRIDGE-MIB's dot1dTpFdbTable (indexed by MAC alone) is added with VLAN 0. A bridge port maps to its
ifIndex through dot1dBasePortIfIndex, and the ifIndex to the interface's name when the interfaces
profile was polled too. At most MAX_ENTRIES are kept (a sample stays a bounded message).
"""

from __future__ import annotations

from amoskys.collectors.snmp.oids import Oid
from amoskys.collectors.snmp.walk import Columns
from amoskys.proto import events_pb2

#: entries one sample carries at most (the rest of a larger table is left out)
MAX_ENTRIES = 16_384
MAC_OCTETS = 6


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _mac(index: Oid) -> bytes | None:
    if len(index) != MAC_OCTETS or any(not 0 <= b <= 255 for b in index):
        return None
    return bytes(index)


def _if_name(interfaces: Columns, if_index: int) -> str:
    for column in ("name", "descr"):
        cell = interfaces.get(column, {}).get((if_index,))
        if cell is not None and isinstance(cell[0], bytes | str) and cell[0]:
            value = cell[0]
            return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return ""


def fdb_entries(fdb: Columns, interfaces: Columns) -> list[events_pb2.SnmpFdbEntry]:
    """The forwarding table's entries, Q-BRIDGE ones first (by FDB id, then MAC), then BRIDGE-only
    MACs (by MAC); malformed indexes are skipped."""
    port_if = {
        index[0]: _int(cell[0])
        for index, cell in fdb.get("base_port_if_index", {}).items()
        if len(index) == 1
    }
    out: list[events_pb2.SnmpFdbEntry] = []
    seen: set[bytes] = set()

    def add(mac: bytes, port: int, vlan: int, status: int) -> None:
        if_index = port_if.get(port, 0)
        out.append(
            events_pb2.SnmpFdbEntry(
                mac=mac,
                port=port,
                if_index=if_index,
                if_name=_if_name(interfaces, if_index) if if_index else "",
                vlan=vlan,
                status=status,
            )
        )
        seen.add(mac)

    q_status = fdb.get("qfdb_status", {})
    for index, (port, _ticks) in sorted(fdb.get("qfdb_port", {}).items()):
        mac = _mac(index[1:]) if len(index) == 1 + MAC_OCTETS else None
        if mac is None or len(out) >= MAX_ENTRIES:
            continue
        status = q_status.get(index)
        add(mac, _int(port), index[0], _int(status[0]) if status else 0)
    d_status = fdb.get("fdb_status", {})
    for index, (port, _ticks) in sorted(fdb.get("fdb_port", {}).items()):
        mac = _mac(index)
        if mac is None or mac in seen or len(out) >= MAX_ENTRIES:
            continue
        status = d_status.get(index)
        add(mac, _int(port), 0, _int(status[0]) if status else 0)
    return out
