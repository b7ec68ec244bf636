"""Fetching one target once: the system group by GET, then the profiles' table columns by GETBULK.

The 32-bit counters are walked only where needed: a poll expects every interface to have its 64-bit
twin (ifXTable) and walks the 23 columns a sample needs of an HC device; if some interface lacks
them, the 32-bit columns follow in a second walk of the same poll, and the next poll of that device
walks all 31 at once (fewer var-binds: pysnmp's cost is per var-bind).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from amoskys.collectors.clock import Clock
from amoskys.collectors.snmp.client import Session, SnmpClient
from amoskys.collectors.snmp.errors import SnmpPollError
from amoskys.collectors.snmp.oids import (
    COUNTER32_COLUMNS,
    FDB_COLUMNS,
    HR_COLUMNS,
    IF_COLUMNS,
    IFX_COLUMNS,
    SYS_UPTIME,
    SYS_UPTIME_PREFIX,
    SYSTEM_SCALARS,
    Oid,
)
from amoskys.collectors.snmp.rows import PollData, number
from amoskys.collectors.snmp.walk import END, Columns, ColumnWalk

TOO_BIG = 1  # the errorStatus tooBig


async def walk_columns(
    client: SnmpClient, session: Session, columns: Mapping[str, Oid], max_repetitions: int
) -> ColumnWalk:
    """Walk `columns` together with GETBULK (sysUpTime as the non-repeater) until all have ended.

    An agent that answers tooBig gets half the repetitions, down to one.
    """
    walk = ColumnWalk(columns)
    repetitions = max_repetitions
    while not walk.done:
        asked = walk.request()
        try:
            varbinds = await client.bulk(session, [SYS_UPTIME_PREFIX], [o for _, o in asked], repetitions)
        except SnmpPollError as err:
            if err.status == TOO_BIG and repetitions > 1:
                repetitions = max(1, repetitions // 2)
                continue
            raise
        if not varbinds:
            break
        (name, uptime), rest = varbinds[0], varbinds[1:]
        ticks = number(uptime)
        if name != SYS_UPTIME or ticks is None:
            raise session.fail(f"GETBULK answered {'.'.join(map(str, name))} for sysUpTime.0", "error")
        walk.feed(asked, ticks, rest)
    return walk


def lacks_hc(columns: Columns) -> bool:
    """Whether some interface (a row of ifTable) has no 64-bit octet counters."""
    hc_in, hc_out = columns.get("hc_in_octets", {}), columns.get("hc_out_octets", {})
    return any(index not in hc_in or index not in hc_out for index in columns.get("descr", {}))


async def fetch(
    client: SnmpClient,
    session: Session,
    *,
    profiles: Sequence[str],
    max_repetitions: int,
    clock: Clock,
    expect_hc: bool = True,
) -> PollData:
    """Everything one poll of `session` asks for. `expect_hc`: walk the 32-bit counters only if some
    interface turns out to lack its 64-bit ones (False: walk them at once, as for a device known to)."""
    system = await client.get(session, list(SYSTEM_SCALARS.values()))
    seen = clock.monotonic()
    uptime = number(system.get(SYS_UPTIME))
    if uptime is None:
        raise session.fail("the agent returned no sysUpTime.0", "error")
    values = {
        field: value
        for field, name in SYSTEM_SCALARS.items()
        if (value := system.get(name)) is not None and value is not END
    }
    requests, varbinds = 1, len(system)
    interfaces: Columns = {}
    if "interfaces" in profiles:
        columns = (
            {**IF_COLUMNS, **IFX_COLUMNS} if expect_hc else {**IF_COLUMNS, **IFX_COLUMNS, **COUNTER32_COLUMNS}
        )
        walk = await walk_columns(client, session, columns, max_repetitions)
        interfaces = walk.cells
        requests, varbinds = requests + walk.requests, varbinds + walk.varbinds
        if expect_hc and lacks_hc(interfaces):
            extra = await walk_columns(client, session, COUNTER32_COLUMNS, max_repetitions)
            interfaces.update(extra.cells)
            requests, varbinds = requests + extra.requests, varbinds + extra.varbinds
    host: Columns = {}
    if "host_resources" in profiles:
        walk = await walk_columns(client, session, HR_COLUMNS, max_repetitions)
        host = walk.cells
        requests, varbinds = requests + walk.requests, varbinds + walk.varbinds
    fdb: Columns | None = None
    if "fdb" in profiles:
        walk = await walk_columns(client, session, FDB_COLUMNS, max_repetitions)
        fdb = walk.cells
        requests, varbinds = requests + walk.requests, varbinds + walk.varbinds
    return PollData(
        system=values,
        uptime_ticks=uptime,
        monotonic=seen,
        interfaces=interfaces,
        host=host,
        fdb=fdb,
        requests=requests,
        varbinds=varbinds,
    )
