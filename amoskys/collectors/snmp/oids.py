"""The OIDs polled, as tuples of ints (checked against net-snmp's MIB files: shared/reference/snmp.md)."""

from __future__ import annotations

Oid = tuple[int, ...]


def oid(text: str) -> Oid:
    """``"1.3.6.1"`` → ``(1, 3, 6, 1)``."""
    return tuple(int(part) for part in text.strip(".").split("."))


def dotted(value: Oid) -> str:
    return ".".join(map(str, value))


SYSTEM = oid("1.3.6.1.2.1.1")
SYS_DESCR = oid("1.3.6.1.2.1.1.1.0")
SYS_OBJECT_ID = oid("1.3.6.1.2.1.1.2.0")
SYS_UPTIME = oid("1.3.6.1.2.1.1.3.0")
SYS_CONTACT = oid("1.3.6.1.2.1.1.4.0")
SYS_NAME = oid("1.3.6.1.2.1.1.5.0")
SYS_LOCATION = oid("1.3.6.1.2.1.1.6.0")
#: GETNEXT of this returns sysUpTime.0: the non-repeater that stamps every GETBULK page.
SYS_UPTIME_PREFIX = oid("1.3.6.1.2.1.1.3")

#: The system group, fetched with one GET; field name of SnmpSystem → OID.
SYSTEM_SCALARS: dict[str, Oid] = {
    "descr": SYS_DESCR,
    "object_id": SYS_OBJECT_ID,
    "uptime_ticks": SYS_UPTIME,
    "contact": SYS_CONTACT,
    "name": SYS_NAME,
    "location": SYS_LOCATION,
}

IF_ENTRY = oid("1.3.6.1.2.1.2.2.1")
IFX_ENTRY = oid("1.3.6.1.2.1.31.1.1.1")

#: ifTable columns always walked: our name → column OID.
IF_COLUMNS: dict[str, Oid] = {
    "descr": (*IF_ENTRY, 2),
    "type": (*IF_ENTRY, 3),
    "speed": (*IF_ENTRY, 5),
    "phys_address": (*IF_ENTRY, 6),
    "admin_status": (*IF_ENTRY, 7),
    "oper_status": (*IF_ENTRY, 8),
    "last_change_ticks": (*IF_ENTRY, 9),
    "in_discards": (*IF_ENTRY, 13),
    "in_errors": (*IF_ENTRY, 14),
    "out_discards": (*IF_ENTRY, 19),
    "out_errors": (*IF_ENTRY, 20),
}

#: ifXTable columns always walked (the 64-bit counters among them).
IFX_COLUMNS: dict[str, Oid] = {
    "name": (*IFX_ENTRY, 1),
    "hc_in_octets": (*IFX_ENTRY, 6),
    "hc_in_ucast_pkts": (*IFX_ENTRY, 7),
    "hc_in_multicast_pkts": (*IFX_ENTRY, 8),
    "hc_in_broadcast_pkts": (*IFX_ENTRY, 9),
    "hc_out_octets": (*IFX_ENTRY, 10),
    "hc_out_ucast_pkts": (*IFX_ENTRY, 11),
    "hc_out_multicast_pkts": (*IFX_ENTRY, 12),
    "hc_out_broadcast_pkts": (*IFX_ENTRY, 13),
    "high_speed": (*IFX_ENTRY, 15),
    "alias": (*IFX_ENTRY, 18),
    "discontinuity_ticks": (*IFX_ENTRY, 19),
}

#: The 32-bit counters, walked only for devices where some interface lacks its 64-bit twin.
COUNTER32_COLUMNS: dict[str, Oid] = {
    "in_octets": (*IF_ENTRY, 10),
    "in_ucast_pkts": (*IF_ENTRY, 11),
    "out_octets": (*IF_ENTRY, 16),
    "out_ucast_pkts": (*IF_ENTRY, 17),
    "in_multicast_pkts": (*IFX_ENTRY, 2),
    "in_broadcast_pkts": (*IFX_ENTRY, 3),
    "out_multicast_pkts": (*IFX_ENTRY, 4),
    "out_broadcast_pkts": (*IFX_ENTRY, 5),
}

#: SnmpInterface counter field → (64-bit column name, 32-bit column name).
COUNTERS: dict[str, tuple[str, str]] = {
    "in_octets": ("hc_in_octets", "in_octets"),
    "out_octets": ("hc_out_octets", "out_octets"),
    "in_ucast_pkts": ("hc_in_ucast_pkts", "in_ucast_pkts"),
    "out_ucast_pkts": ("hc_out_ucast_pkts", "out_ucast_pkts"),
    "in_multicast_pkts": ("hc_in_multicast_pkts", "in_multicast_pkts"),
    "out_multicast_pkts": ("hc_out_multicast_pkts", "out_multicast_pkts"),
    "in_broadcast_pkts": ("hc_in_broadcast_pkts", "in_broadcast_pkts"),
    "out_broadcast_pkts": ("hc_out_broadcast_pkts", "out_broadcast_pkts"),
}

# HOST-RESOURCES-MIB
HR_PROCESSOR_LOAD = oid("1.3.6.1.2.1.25.3.3.1.2")
HR_STORAGE_ENTRY = oid("1.3.6.1.2.1.25.2.3.1")
HR_COLUMNS: dict[str, Oid] = {
    "cpu_load": HR_PROCESSOR_LOAD,
    "storage_descr": (*HR_STORAGE_ENTRY, 3),
    "storage_units": (*HR_STORAGE_ENTRY, 4),
    "storage_size": (*HR_STORAGE_ENTRY, 5),
    "storage_used": (*HR_STORAGE_ENTRY, 6),
}

# BRIDGE-MIB and Q-BRIDGE-MIB forwarding tables (the fdb profile)
DOT1D_BASE_PORT_IF_INDEX = oid("1.3.6.1.2.1.17.1.4.1.2")  # index: dot1dBasePort
DOT1D_TP_FDB_ENTRY = oid("1.3.6.1.2.1.17.4.3.1")  # index: the MAC's six octets
DOT1Q_TP_FDB_ENTRY = oid("1.3.6.1.2.1.17.7.1.2.2.1")  # index: dot1qFdbId, then the MAC's six octets
FDB_COLUMNS: dict[str, Oid] = {
    "base_port_if_index": DOT1D_BASE_PORT_IF_INDEX,
    "fdb_port": (*DOT1D_TP_FDB_ENTRY, 2),
    "fdb_status": (*DOT1D_TP_FDB_ENTRY, 3),
    "qfdb_port": (*DOT1Q_TP_FDB_ENTRY, 2),
    "qfdb_status": (*DOT1Q_TP_FDB_ENTRY, 3),
}
