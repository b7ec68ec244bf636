"""From fetched values to an SnmpSample, pure: join the tables on ifIndex, pick counters, add rates.

Input is what one successful poll fetched (`PollData`: Python values, cells stamped with the
sysUpTime of their response) and the target's state after its previous poll; output is the sample
and the new state. No I/O and no clock: the caller passes the monotonic time of the poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amoskys.collectors.snmp.fdb import fdb_entries
from amoskys.collectors.snmp.oids import COUNTERS, Oid
from amoskys.collectors.snmp.rates import RESET, Rate, Reading, agent_restarted, counter_rate
from amoskys.collectors.snmp.walk import Cell, Columns
from amoskys.proto import events_pb2

IF_SPEED_SATURATED = 4_294_967_295


@dataclass(frozen=True, slots=True)
class InterfaceState:
    """What the next poll of one interface needs: the octet readings and the discontinuity time."""

    in_octets: Reading | None
    out_octets: Reading | None
    discontinuity_ticks: int | None


@dataclass(frozen=True, slots=True)
class TargetState:
    """A target after a successful poll: its uptime, when we saw it, and its interfaces."""

    uptime_ticks: int
    monotonic: float
    interfaces: dict[int, InterfaceState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PollData:
    """What one successful poll fetched."""

    system: dict[str, object]  # SnmpSystem field → value
    uptime_ticks: int
    monotonic: float  # our monotonic clock when the system group's response arrived
    interfaces: Columns = field(default_factory=dict)  # column name (oids.IF*_COLUMNS) → cells
    host: Columns = field(default_factory=dict)  # oids.HR_COLUMNS name → cells
    fdb: Columns | None = None  # oids.FDB_COLUMNS name → cells; None: the fdb profile was not polled
    requests: int = 0
    varbinds: int = 0


@dataclass(frozen=True, slots=True)
class Assembled:
    sample: events_pb2.SnmpSample
    state: TargetState
    counter_resets: int  # interfaces whose counters reset since the previous poll


def text(value: object) -> str:
    """An OctetString (or anything) as text: UTF-8 with replacement, NULs dropped."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").replace("\x00", "")
    return "" if value is None else str(value)


def number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _value(columns: Columns, column: str, index: Oid) -> object:
    cell: Cell | None = columns.get(column, {}).get(index)
    return None if cell is None else cell[0]


def _reading(columns: Columns, column: str, index: Oid, width: int) -> Reading | None:
    cell = columns.get(column, {}).get(index)
    value = None if cell is None else number(cell[0])
    if cell is None or value is None:
        return None
    return Reading(value=int(value), ticks=cell[1], width=width)


def speed_bps(if_speed: int | None, high_speed: int | None) -> int:
    """ifSpeed, or ifHighSpeed (Mbit/s) when ifSpeed is missing or saturated at 2^32 − 1."""
    if high_speed and (if_speed is None or if_speed >= IF_SPEED_SATURATED):
        return high_speed * 1_000_000
    return if_speed or 0


def system_message(system: dict[str, object], uptime_ticks: int) -> events_pb2.SnmpSystem:
    return events_pb2.SnmpSystem(
        descr=text(system.get("descr")),
        object_id=text(system.get("object_id")),
        name=text(system.get("name")),
        contact=text(system.get("contact")),
        location=text(system.get("location")),
        uptime_ticks=uptime_ticks,
    )


def _interface(
    columns: Columns,
    index: Oid,
    prev: InterfaceState | None,
    restarted: bool,
) -> tuple[events_pb2.SnmpInterface, InterfaceState, bool]:
    """One interface row, its new state, and whether its counters reset."""
    iface = events_pb2.SnmpInterface(if_index=index[0])
    iface.name = text(_value(columns, "name", index))
    iface.descr = text(_value(columns, "descr", index))
    iface.alias = text(_value(columns, "alias", index))
    iface.type = number(_value(columns, "type", index)) or 0
    iface.speed_bps = speed_bps(
        number(_value(columns, "speed", index)), number(_value(columns, "high_speed", index))
    )
    iface.admin_status = number(_value(columns, "admin_status", index)) or 0
    iface.oper_status = number(_value(columns, "oper_status", index)) or 0
    phys = _value(columns, "phys_address", index)
    iface.phys_address = phys if isinstance(phys, bytes) else b""
    iface.last_change_ticks = number(_value(columns, "last_change_ticks", index)) or 0
    for name in ("in_errors", "out_errors", "in_discards", "out_discards"):
        setattr(iface, name, number(_value(columns, name, index)) or 0)

    readings: dict[str, Reading | None] = {}
    for field_name, (hc_column, column32) in COUNTERS.items():
        reading = _reading(columns, hc_column, index, 64) or _reading(columns, column32, index, 32)
        readings[field_name] = reading
        if reading is not None:
            setattr(iface, field_name, reading.value)
    iface.hc_counters = bool(readings["in_octets"] and readings["in_octets"].width == 64)

    discontinuity = number(_value(columns, "discontinuity_ticks", index))
    state = InterfaceState(readings["in_octets"], readings["out_octets"], discontinuity)
    if prev is None:
        return iface, state, False
    broke = restarted or (
        discontinuity is not None
        and prev.discontinuity_ticks is not None
        and discontinuity != prev.discontinuity_ticks
    )
    max_octets = iface.speed_bps / 8 if iface.speed_bps else None
    reset = False
    for field_name, before, now in (
        ("in_bps", prev.in_octets, state.in_octets),
        ("out_bps", prev.out_octets, state.out_octets),
    ):
        if before is None or now is None:
            continue
        rate: Rate = RESET if broke else counter_rate(before, now, max_per_second=max_octets)
        if rate.per_second is not None:
            setattr(iface, field_name, rate.per_second * 8)
        reset = reset or rate.reset
    iface.counters_reset = reset
    return iface, state, reset


def _host(sample: events_pb2.SnmpSample, host: Columns) -> None:
    for _, (load, _ticks) in sorted(host.get("cpu_load", {}).items()):
        percent = number(load)
        if percent is not None:
            sample.cpu_load_percent.append(int(percent))
    for index, (descr, _ticks) in sorted(host.get("storage_descr", {}).items()):
        units = number(_value(host, "storage_units", index)) or 0
        size = number(_value(host, "storage_size", index)) or 0
        used = number(_value(host, "storage_used", index)) or 0
        sample.storage.add(
            index=index[0],
            descr=text(descr),
            size_bytes=max(0, size) * units,
            used_bytes=max(0, used) * units,
        )


def assemble(
    target: str, address: str, data: PollData, prev: TargetState | None, *, poll_seconds: float
) -> Assembled:
    """The SnmpSample of one successful poll, with rates against `prev` (None: the first poll)."""
    sample = events_pb2.SnmpSample(target=target, address=address, reachable=True, poll_seconds=poll_seconds)
    sample.system.CopyFrom(system_message(data.system, data.uptime_ticks))
    restarted = prev is not None and agent_restarted(
        prev.uptime_ticks, data.uptime_ticks, data.monotonic - prev.monotonic
    )
    sample.agent_restarted = restarted
    if prev is not None and not restarted:
        sample.rate_interval_seconds = ((data.uptime_ticks - prev.uptime_ticks) % 2**32) / 100
    indexes = sorted({index for cells in data.interfaces.values() for index in cells if len(index) == 1})
    states: dict[int, InterfaceState] = {}
    resets = 0
    for index in indexes:
        before = prev.interfaces.get(index[0]) if prev is not None else None
        iface, iface_state, reset = _interface(data.interfaces, index, before, restarted)
        sample.interfaces.append(iface)
        states[index[0]] = iface_state
        resets += reset
    _host(sample, data.host)
    if data.fdb is not None:
        sample.fdb_polled = True
        sample.fdb.extend(fdb_entries(data.fdb, data.interfaces))
    state = TargetState(uptime_ticks=data.uptime_ticks, monotonic=data.monotonic, interfaces=states)
    return Assembled(sample=sample, state=state, counter_resets=resets)
