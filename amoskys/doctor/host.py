"""Checks of the box itself: who we run as, the clock, the data dir and the listening ports."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from amoskys.collectors.capabilities import effective_capabilities
from amoskys.config import format_listen
from amoskys.doctor.findings import Finding, Status

#: A clock before this (2026-01-01 UTC) is wrong: this build did not exist yet.
CLOCK_FLOOR_SECONDS = 1_767_225_600
#: Less free space than this in the data dir's file system stops the store from starting.
MIN_FREE_MB = 64
_MB = 1024 * 1024
#: The SQLite file header holds PRAGMA user_version, big-endian, at this offset.
_USER_VERSION_OFFSET = 60


def privileges() -> Finding:
    """Who this process is and which capabilities it holds (what the collectors' checks are against)."""
    uid = os.geteuid()
    caps = sorted(effective_capabilities())
    shown = ", ".join(c.removeprefix("CAP_") for c in caps if c in _INTERESTING) or "none of note"
    who = "root" if uid == 0 else f"uid {uid}"
    return Finding(
        "privileges",
        "ok",
        f"checked as {who}; capabilities: {shown} (the checks below hold for a process started like "
        "this one: run doctor the way the service runs, e.g. under the same user and capabilities)",
    )


_INTERESTING = frozenset(
    {"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_BIND_SERVICE", "CAP_DAC_READ_SEARCH"}
)


def clock(now: float | None = None, *, ntp: str | None = None) -> Finding:
    """The wall clock: not before this build existed; synchronised when systemd can tell."""
    now = time.time() if now is None else now
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if now < CLOCK_FLOOR_SECONDS:
        return Finding(
            "clock",
            "fail",
            f"the clock reads {shown}, before this build was made: event times and certificates would be wrong",
            "set the time and keep it synchronised: sudo timedatectl set-ntp true",
        )
    synced = _ntp_synchronized() if ntp is None else ntp
    if synced == "no":
        return Finding(
            "clock",
            "warn",
            f"the clock reads {shown} but is not synchronised (timedatectl: NTPSynchronized=no)",
            "sudo timedatectl set-ntp true (or run chrony/ntpd)",
        )
    how = "synchronised" if synced == "yes" else "synchronisation unknown (no timedatectl)"
    return Finding("clock", "ok", f"{shown}, {how}")


def _ntp_synchronized() -> str:
    """ "yes", "no", or "" when systemd cannot tell (no timedatectl, no systemd as PID 1)."""
    path = shutil.which("timedatectl")
    if path is None:
        return ""
    try:
        done = subprocess.run(
            [path, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    value = done.stdout.strip()
    return value if done.returncode == 0 and value in ("yes", "no") else ""


def data_dir(root: Path, reason: str, *, hard_cap_mb: int, schema_version: int) -> list[Finding]:
    """The data dir: usable by this user, private, on a file system with room for the store's hard cap,
    and holding no store newer than this build. A missing one is fine when `run` can create it."""
    subject = "data_dir"
    where = f"{root} (chosen by {reason})"
    if not root.exists():
        parent = next((p for p in root.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK | os.X_OK):
            return [Finding(subject, "ok", f"{where} does not exist yet; `amoskys run` creates it (0700)")]
        return [
            Finding(
                subject,
                "fail",
                f"{where} does not exist and {parent} is not writable by uid {os.geteuid()}",
                f"sudo install -d -m 0700 -o {os.geteuid()} {root}  (or pass another --data-dir)",
            )
        ]
    if not root.is_dir():
        return [Finding(subject, "fail", f"{where} is not a directory", "pass another --data-dir")]
    found: list[Finding] = []
    st = root.stat()
    if not os.access(root, os.W_OK | os.X_OK):
        found.append(
            Finding(
                subject,
                "fail",
                f"{where} is not writable by uid {os.geteuid()} (owner uid {st.st_uid}, mode {st.st_mode & 0o777:04o})",
                f"sudo chown -R {os.geteuid()} {root}",
            )
        )
    elif st.st_mode & 0o777 != 0o700 and st.st_uid != os.geteuid():
        found.append(
            Finding(
                subject,
                "fail",
                f"{where} is mode {st.st_mode & 0o777:04o} and owned by uid {st.st_uid}: `run` cannot make it 0700",
                f"sudo chown -R {os.geteuid()} {root}",
            )
        )
    else:
        found.append(Finding(subject, "ok", f"{where} is writable"))
    found.append(_free_space(root, hard_cap_mb))
    version = _store_version(root / "events.db")
    if version is not None and version > schema_version:
        found.append(
            Finding(
                "store",
                "fail",
                f"{root / 'events.db'} has schema version {version}, newer than this build's {schema_version}: "
                "it was written by a newer amoskys, and this one refuses to open it",
                "run the newer amoskys again, or restore a backup made by this version "
                "(amoskys restore FILE --data-dir DIR)",
            )
        )
    elif version is not None:
        note = "" if version == schema_version else f"; `run` migrates it to {schema_version}"
        found.append(Finding("store", "ok", f"schema version {version}{note}"))
    return found


def _free_space(root: Path, hard_cap_mb: int) -> Finding:
    usage = shutil.disk_usage(root)
    held = sum(p.stat().st_size for p in root.glob("events.db*") if p.is_file())
    free_mb, room_mb = usage.free // _MB, (usage.free + held) // _MB
    if free_mb < MIN_FREE_MB:
        return Finding(
            "disk",
            "fail",
            f"{free_mb} MB free on the data dir's file system (the store needs at least {MIN_FREE_MB} MB)",
            f"free space on the file system of {root}, or move the data dir (--data-dir)",
        )
    if room_mb < hard_cap_mb:
        return Finding(
            "disk",
            "warn",
            f"{free_mb} MB free: the store can grow to {room_mb} MB, short of its hard cap "
            f"([store] hard_cap_mb = {hard_cap_mb}); the disk fills before the store drops old events",
            f"set [store] hard_cap_mb to at most {room_mb * 9 // 10} (and high_water_mb below it), or free space",
        )
    return Finding("disk", "ok", f"{free_mb} MB free, room for the store's hard cap of {hard_cap_mb} MB")


def _store_version(db: Path) -> int | None:
    """PRAGMA user_version read from the file header (no SQLite connection: it would create -shm)."""
    try:
        with db.open("rb") as f:
            header = f.read(100)
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    return int.from_bytes(header[_USER_VERSION_OFFSET : _USER_VERSION_OFFSET + 4], "big")


@dataclass(frozen=True)
class Listener:
    """A TCP address the service will listen on, and the setting that chooses it."""

    service: str  # web, bus, enrol
    host: str
    port: int
    setting: str
    optional: bool = False
    """True when the service starts without it (the enrolment port): a problem is then a warning."""


def running_ports(run_json: Path) -> tuple[int, dict[str, tuple[str, int]]] | None:
    """The pid and ports of a live amoskys that wrote `run_json` (None when none runs)."""
    try:
        info = json.loads(run_json.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    ports = {}
    for service in ("web", "bus", "enrol"):
        held = info.get(service)
        if isinstance(held, dict) and isinstance(held.get("port"), int):
            ports[service] = (str(held.get("host", "")), held["port"])
    return pid, ports


def port(listener: Listener, running: tuple[int, dict[str, tuple[str, int]]] | None) -> Finding:
    """Whether `listener`'s address can be bound now (or is held by the amoskys of this data dir)."""
    subject = listener.service
    address = format_listen(listener.host, listener.port)
    if listener.port == 0:
        return Finding(subject, "ok", f"{address}: any free port")
    if running is not None:
        pid, ports = running
        if ports.get(listener.service, ("", -1))[1] == listener.port:
            return Finding(
                subject, "ok", f"{address}: held by the running amoskys of this data dir (pid {pid})"
            )
    err = _bind_error(listener.host, listener.port)
    if err is None:
        return Finding(subject, "ok", f"{address} is free")
    bad: Status = "warn" if listener.optional else "fail"
    after = " (the appliance starts without it)" if listener.optional else ""
    if err.errno == errno.EADDRINUSE:
        return Finding(
            subject,
            bad,
            f"{address} is in use{after}",
            f"stop what listens there (sudo ss -ltnp 'sport = :{listener.port}' shows it) or change {listener.setting}",
        )
    if err.errno == errno.EACCES:
        return Finding(
            subject,
            bad,
            f"{address}: port {listener.port} is privileged and this process lacks CAP_NET_BIND_SERVICE{after}",
            f"choose a port >= 1024 in {listener.setting}, or grant CAP_NET_BIND_SERVICE "
            "(AmbientCapabilities=CAP_NET_BIND_SERVICE in the unit)",
        )
    return Finding(
        subject,
        bad,
        f"cannot listen on {address}: {err.strerror or err}{after}",
        f"use an address of this host in {listener.setting} (ip -brief address lists them)",
    )


def _bind_error(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as err:
        return err
    return None
