"""Checks of each registered collector: the verdict of its own ``self_check()`` (what the supervisor
would decide at start), the interface it names, and the targets and secret files its section lists.

Nothing here names a collector: the checks follow the section's fields (``interface``, ``targets``
with ``address``/``port`` and ``*_file``/``*_env`` secrets), so a new collector folder is covered too.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import msgspec

from amoskys import __version__
from amoskys.collectors import capabilities
from amoskys.collectors import registry as collector_registry
from amoskys.collectors.base import CollectorConfig, NotConfigured
from amoskys.collectors.context import ApplianceInfo, CollectorContext
from amoskys.doctor.findings import Finding
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics

#: How long one target's name may take to resolve.
RESOLVE_TIMEOUT_SECONDS = 3.0
_IFF_UP = 0x1
_CAP = re.compile(r"CAP_[A-Z_]+")
SYS_CLASS_NET = Path("/sys/class/net")


def capability_fix(reason: str) -> str:
    """The fix for a reason naming a missing capability ("" when it names none)."""
    caps = sorted(set(_CAP.findall(reason)))
    if not caps:
        return ""
    listed = " ".join(caps)
    return (
        f"run as root, or grant {listed}: AmbientCapabilities={listed} in the systemd unit "
        f"(packaging/systemd/ grants it), or for a shell: sudo setcap {','.join(c.lower() for c in caps)}+ep "
        "on the Python interpreter that runs amoskys"
    )


def collectors(
    sections: Callable[[str], CollectorConfig],
    data_dir: Path,
    *,
    has_capability: Callable[[str], bool] = capabilities.has_capability,
    environ: Mapping[str, str] = os.environ,
    net_dir: Path = SYS_CLASS_NET,
) -> list[Finding]:
    """A verdict on every registered collector (its section from `sections(name)`), in name order."""
    metrics = Metrics()
    stamper = EnvelopeStamper("doctor")
    info = ApplianceInfo("doctor", __version__, socket.gethostname(), "appliance", time.time_ns())
    found: list[Finding] = []
    for name, spec in collector_registry.discover().items():
        section = sections(name)
        subject = f"collector:{name}"
        if not section.enabled:
            found.append(Finding(subject, "off", f"enabled = false in [collectors.{name}]"))
            continue
        ctx = CollectorContext(
            name,
            publish=_never_publish,
            stamper=stamper,
            metrics=metrics,
            data_dir=data_dir,
            appliance=info,
            has_capability=has_capability,
        )
        collector = spec.load()(section, ctx)  # init does no I/O (the collector contract)
        check = getattr(collector, "self_check", None)
        reason = check() if check is not None else None
        if isinstance(reason, NotConfigured):
            found.append(
                Finding(subject, "warn", f"enabled but idle: {reason}", _configure_fix(name, reason))
            )
            continue
        if reason:
            found.append(
                Finding(subject, "fail", f"will be disabled: {reason}", capability_fix(reason) or reason)
            )
            continue
        details = [
            *interface(name, section, net_dir),
            *targets(name, section, environ),
        ]
        mode = str(getattr(collector, "mode", ""))
        fallback = "(" in mode  # "polling (netlink needs CAP_NET_ADMIN)": runs, in a lesser mode
        if fallback:
            found.append(Finding(subject, "warn", f"will run degraded, mode {mode}", capability_fix(mode)))
        else:
            found.append(Finding(subject, "ok", f"will run{f', mode {mode}' if mode else ''}"))
        found.extend(details)
    return found


async def _never_publish(envelopes: object) -> None:
    raise RuntimeError("amoskys doctor runs no collector")


def _configure_fix(name: str, reason: str) -> str:
    m = re.search(r"\(([^)]*)\)", reason)
    hint = f"configure it ({m.group(1)})" if m else f"configure [collectors.{name}]"
    return f"{hint}, or set enabled = false in [collectors.{name}]"


def interface(name: str, section: CollectorConfig, net_dir: Path = SYS_CLASS_NET) -> list[Finding]:
    """The interface a section names: it exists, is administratively up and has a carrier."""
    ifname = getattr(section, "interface", "")
    if not isinstance(ifname, str) or not ifname:
        return []
    subject = f"collector:{name}:interface"
    where = net_dir / ifname
    if not where.is_dir():
        present = sorted(p.name for p in net_dir.iterdir()) if net_dir.is_dir() else []
        return [
            Finding(
                subject,
                "fail",
                f"interface {ifname!r} does not exist",
                f"set interface in [collectors.{name}] to one of: {', '.join(present) or '(none found)'}",
            )
        ]
    flags = _read_int(where / "flags")
    operstate = _read(where / "operstate")
    if flags is not None and not flags & _IFF_UP:
        return [
            Finding(
                subject,
                "fail",
                f"interface {ifname!r} is down (administratively)",
                f"sudo ip link set {ifname} up (and make it permanent in the network configuration)",
            )
        ]
    if operstate == "down":
        return [
            Finding(
                subject,
                "warn",
                f"interface {ifname!r} is up but has no carrier: nothing arrives until a link does",
                f"check the cable or the switch's mirror (SPAN) session feeding {ifname}",
            )
        ]
    return [Finding(subject, "ok", f"interface {ifname!r} is up ({operstate or 'state unknown'})")]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text, 0)
    except ValueError:
        return None


def targets(name: str, section: CollectorConfig, environ: Mapping[str, str]) -> list[Finding]:
    """Each target a section lists: its address resolves, its secret files are readable and its
    secret variables are set."""
    listed: Iterable[Any] = getattr(section, "targets", ()) or ()
    found: list[Finding] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        pending = []
        for target in listed:
            address = getattr(target, "address", "")
            if not isinstance(address, str) or not address:
                continue
            port = getattr(target, "port", None)
            label = getattr(target, "name", address)
            subject = f"collector:{name}:{label}"
            pending.append((subject, address, port, target, pool.submit(_resolve, address, port)))
        for subject, address, port, target, future in pending:
            try:
                error = future.result(timeout=RESOLVE_TIMEOUT_SECONDS)
            except FutureTimeout:
                error = f"no answer from the resolver within {RESOLVE_TIMEOUT_SECONDS:g} s"
            where = f"{address}:{port}" if port else address
            if error:
                found.append(
                    Finding(
                        subject,
                        "fail",
                        f"{where} does not resolve: {error}",
                        f"fix the name in [[collectors.{name}.targets]] (or use its IP address), or its DNS",
                    )
                )
            else:
                found.append(Finding(subject, "ok", f"{where} resolves"))
            found.extend(_secrets(subject, name, target, environ))
    return found


def _resolve(address: str, port: int | None) -> str:
    try:
        socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as err:
        return str(getattr(err, "strerror", None) or err)
    return ""


def _secrets(subject: str, name: str, target: Any, environ: Mapping[str, str]) -> list[Finding]:
    found = []
    values = msgspec.structs.asdict(target) if isinstance(target, msgspec.Struct) else {}
    for key, value in values.items():
        if not value or not isinstance(value, str):
            continue
        if key.endswith("_file") and not os.access(value, os.R_OK):
            why = "does not exist" if not os.path.exists(value) else f"is not readable by uid {os.geteuid()}"
            found.append(
                Finding(
                    subject,
                    "fail",
                    f"{key} {value!r} {why}",
                    f"create it (one line, mode 0600, owned by the service's user) or fix {key} in "
                    f"[[collectors.{name}.targets]]",
                )
            )
        elif key.endswith("_env") and not environ.get(value):
            found.append(
                Finding(
                    subject,
                    "fail",
                    f"{key}: the environment variable {value} is not set",
                    f"set {value} in the service's environment (Environment= or an EnvironmentFile= "
                    "of mode 0600 in the unit)",
                )
            )
    return found
