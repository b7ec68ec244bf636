"""The file-descriptor budget: RLIMIT_NOFILE shared out between the parts of the appliance.

At start the soft limit is raised to the hard one (when allowed). The descriptors already open, the
store, the collectors, the control socket and the web port (uvicorn's ``limit_concurrency``) get their
reservations first; the bus gets the rest as its connection limit (grpc core's
``grpc.max_allowed_incoming_connections``), so a flood of idle connections on the bus port costs the
bus its own share and nothing else. The reservations are generous estimates, not enforced quotas.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Any, Literal

from amoskys.errors import ConfigError

#: Python, grpc core (epoll, eventfds, wake-up pipes), log files, certificate reloads, forwarders.
HEADROOM_FDS = 64
#: The writer, checkpointer and reader connections (database, -wal and -shm each) and side files.
STORE_FDS = 32
#: Per enabled collector: /proc reads, netlink and packet sockets, SNMP sockets.
COLLECTOR_FDS = 32
#: The control socket and the `amoskys` commands talking to it.
CONTROL_FDS = 16
#: Web connections (uvicorn's limit_concurrency: more are answered 503): at most this many ...
WEB_MAX_CONNECTIONS = 256
#: ... at least this many; between the two, a quarter of what the fixed reservations leave.
WEB_MIN_CONNECTIONS = 16
#: Fewer descriptors than this left for the bus: the limit is too low to run.
BUS_MIN_CONNECTIONS = 16
#: The derived bus limit never exceeds this: an idle connection costs ~21 KiB of memory.
BUS_DEFAULT_MAX_CONNECTIONS = 4096
#: What a hard limit of "unlimited" is raised to (Linux refuses more than fs.nr_open anyway).
UNLIMITED_TARGET = 1 << 20


@dataclass(frozen=True)
class FdBudget:
    """How the descriptor limit is shared; shown by `amoskys status`."""

    limit: int  # the soft RLIMIT_NOFILE in force
    raised_from: int  # the soft limit found at start (== limit when it was not raised)
    open_at_start: int
    reserved_store: int
    reserved_collectors: int
    reserved_control: int
    web_connections: int  # uvicorn limit_concurrency
    bus_connections: int  # grpc.max_allowed_incoming_connections
    bus_from: Literal["derived", "config"]

    def to_dict(self) -> dict[str, Any]:
        """Short keys, in the order `amoskys status` shows them."""
        return {
            "limit": self.limit,
            "raised_from": self.raised_from,
            "open_at_start": self.open_at_start,
            "store": self.reserved_store,
            "collectors": self.reserved_collectors,
            "control": self.reserved_control,
            "web": self.web_connections,
            "bus": self.bus_connections,
            "bus_from": self.bus_from,
        }


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit when allowed; (soft before, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft  # a container may cap it below the hard limit: keep what we have
        return soft, target
    return soft, soft


def open_fds() -> int:
    """Descriptors this process has open now (a high guess where /proc and /dev/fd are missing)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path)) - 1  # less the one listdir used
        except OSError:
            continue
    return 64


def plan(
    *, limit: int, raised_from: int, open_at_start: int, collectors: int, configured_bus: int
) -> FdBudget:
    """Share `limit` out: fixed reservations first, then the web port, then the bus.

    `configured_bus` is ``[bus] max_connections`` (0: derive it). A configured value larger than
    what is left raises ConfigError naming the key; so does a limit too low to leave the bus
    BUS_MIN_CONNECTIONS.
    """
    store, control = STORE_FDS, CONTROL_FDS
    reserved_collectors = collectors * COLLECTOR_FDS
    fixed = open_at_start + HEADROOM_FDS + store + reserved_collectors + control
    spare = limit - fixed
    web = max(WEB_MIN_CONNECTIONS, min(WEB_MAX_CONNECTIONS, spare // 4))
    available = spare - web
    if available < BUS_MIN_CONNECTIONS:
        needed = fixed + WEB_MIN_CONNECTIONS + BUS_MIN_CONNECTIONS
        raise ConfigError(
            f"the descriptor limit (RLIMIT_NOFILE) is {limit}: the appliance needs at least {needed} "
            f"({open_at_start} open, {HEADROOM_FDS} headroom, {store + reserved_collectors + control} for "
            f"the store, {collectors} collectors and the control socket, {WEB_MIN_CONNECTIONS} web and "
            f"{BUS_MIN_CONNECTIONS} bus connections); raise it (`ulimit -n`, LimitNOFILE= in the systemd unit)",
            path="bus.max_connections",
            value=limit,
        )
    if configured_bus > available:
        raise ConfigError(
            f"bus.max_connections: {configured_bus} is more than the {available} descriptors left for "
            f"the bus by the descriptor limit {limit} (RLIMIT_NOFILE); lower it, set 0 to derive it, "
            "or raise the limit",
            path="bus.max_connections",
            value=configured_bus,
        )
    bus = configured_bus or min(available, BUS_DEFAULT_MAX_CONNECTIONS)
    return FdBudget(
        limit=limit,
        raised_from=raised_from,
        open_at_start=open_at_start,
        reserved_store=store,
        reserved_collectors=reserved_collectors,
        reserved_control=control,
        web_connections=web,
        bus_connections=bus,
        bus_from="config" if configured_bus else "derived",
    )


def at_start(*, collectors: int, configured_bus: int) -> FdBudget:
    """Raise the soft limit, then plan the budget from the descriptors open now."""
    before, now = raise_soft_limit()
    return plan(
        limit=now,
        raised_from=before,
        open_at_start=open_fds(),
        collectors=collectors,
        configured_bus=configured_bus,
    )
