"""How the pages show values: times (a <time> element the browser shows in its own zone, the ISO instant
on hover), durations, bit rates and link speeds, SNMP uptime, and a one-line summary of an event of each
kind. Pure functions: the Jinja filters of amoskys.web.pages."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from amoskys.web.netnames import flow_service, protocol_name


def iso(ns: int | str | None) -> str:
    """The ISO 8601 instant of a time in ns since the epoch, to the millisecond ("" when unset)."""
    if not ns:
        return ""
    return (
        datetime.fromtimestamp(int(ns) / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def time_html(ns: int | str | None) -> Markup:
    """A <time> element: UTC text (static/tables.js shows it in the browser's zone), the ISO instant in
    `datetime` and on hover; "—" when unset."""
    if not ns:
        return Markup("—")
    text = datetime.fromtimestamp(int(ns) / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    stamp = iso(ns)
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(stamp, text)


def duration(seconds: float | None) -> str:
    """A duration in the largest units that fit: "40 µs", "850 ms", "12.4 s", "5 m 3 s", "2 h 5 m", "3 d 4 h"."""
    if seconds is None:
        return "—"
    s = float(seconds)
    if s <= 0:
        return "0 s"
    if s < 0.001:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    whole = int(s)
    d, rest = divmod(whole, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m} m"
    return f"{m} m {sec} s"


def uptime(ticks: int | str | None) -> str:
    """SNMP sysUpTime (hundredths of a second) as days, hours and minutes: "12d 3h 4m" ("" when unset)."""
    if ticks is None or ticks == "":
        return "—"
    minutes = int(ticks) // 6000
    d, rest = divmod(minutes, 1440)
    h, m = divmod(rest, 60)
    if d:
        return f"{d}d {h}h {m}m"
    if h:
        return f"{h}h {m}m"
    return f"{m}m" if m else f"{int(ticks) // 100}s"


_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def bit_rate(bps: float | int | None) -> str:
    """Bits per second in SI units: "1.25 Gb/s", "940 kb/s", "12 b/s" ("—" when unknown)."""
    if bps is None:
        return "—"
    value = float(bps)
    for scale, prefix in _SI:
        if value >= scale:
            scaled = value / scale
            digits = 0 if scaled >= 100 or scaled == int(scaled) else (1 if scaled >= 10 else 2)
            return f"{scaled:.{digits}f} {prefix}b/s"
    return f"{value:.0f} b/s"


def count(n: int | float | str | None) -> str:
    """A count with thousands separators ("—" when unknown)."""
    if n is None or n == "":
        return "—"
    return f"{float(n):,.0f}"


def _bytes(n: int | float | str | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value} B"  # unreachable: TiB ends the loop


def _i(body: dict[str, Any], key: str) -> int:
    """An integer field of a protobuf JSON body (64-bit ones come as strings)."""
    try:
        return int(body.get(key) or 0)
    except (TypeError, ValueError):
        return 0


def _flow(b: dict[str, Any]) -> str:
    proto = _i(b, "protocol")
    sport, dport = _i(b, "src_port"), _i(b, "dst_port")
    svc = flow_service(proto, sport, dport)
    fwd, rev = b.get("forward") or {}, b.get("reverse") or {}
    octets = _i(fwd, "octets") + _i(rev, "octets")
    packets = _i(fwd, "packets") + _i(rev, "packets")
    ends = "interim" if not b.get("final") else str(b.get("end_reason", "")).lower()
    span = (_i(b, "last_ts_ns") - _i(b, "first_ts_ns")) / 1e9
    return (
        f"{protocol_name(proto)}{'/' + svc if svc else ''} {b.get('src_addr', '')}:{sport} → "
        f"{b.get('dst_addr', '')}:{dport}, {count(packets)} pkts, {_bytes(octets)}, "
        f"{duration(max(0.0, span))}, {ends}"
    )


def _process(b: dict[str, Any]) -> str:
    kind = str(b.get("kind", "")).lower()
    argv = " ".join(b.get("argv") or []) or b.get("exe", "")
    who = f" as {b['user']}" if b.get("user") else ""
    if kind == "exit":
        how = f"signal {b['exit_signal']}" if "exit_signal" in b else f"code {b.get('exit_code', 0)}"
        return f"exit pid {_i(b, 'pid')} ({how}) after {duration(_i(b, 'lifetime_ns') / 1e9)}: {argv}"
    return f"{kind} pid {_i(b, 'pid')} ppid {_i(b, 'ppid')}{who}: {argv}"


def _host(b: dict[str, Any]) -> str:
    total, used = _i(b, "memory_total_bytes"), _i(b, "memory_used_bytes")
    return (
        f"{b.get('hostname', '')}: CPU {float(b.get('cpu_percent') or 0):.1f} %, memory "
        f"{_bytes(used)} of {_bytes(total)}, load {float(b.get('load1') or 0):.2f}"
    )


def _snmp(b: dict[str, Any]) -> str:
    if not b.get("reachable"):
        return f"{b.get('target', '')} ({b.get('address', '')}) unreachable: {b.get('error', '')}"
    system = b.get("system") or {}
    ifs = b.get("interfaces") or []
    up = sum(1 for i in ifs if _i(i, "oper_status") == 1)
    return (
        f"{b.get('target', '')} ({system.get('name') or b.get('address', '')}): up {uptime(system.get('uptime_ticks'))}, "
        f"{len(ifs)} interfaces ({up} up), polled in {duration(float(b.get('poll_seconds') or 0))}"
    )


def _device(b: dict[str, Any]) -> str:
    change = str(b.get("change", "")).lower().replace("_", " ")
    parts = [b.get("ip", ""), mac_text(b.get("mac", "")), b.get("vendor", ""), b.get("hostname", "")]
    return f"{change}: " + ", ".join(p for p in parts if p)


def _loss(b: dict[str, Any]) -> str:
    return f"{b.get('where', '')} lost {count(_i(b, 'count'))} {b.get('what', '')} ({b.get('reason', '')})"


def _alert(b: dict[str, Any]) -> str:
    level = str(b.get("level", "")).removeprefix("LEVEL_").lower()
    title = b.get("title") or b.get("summary") or b.get("rule", "")
    return f"{level or 'alert'}: {title} on {b.get('host', '')} (×{_i(b, 'count') or 1})"


def _audit(b: dict[str, Any]) -> str:
    result = "ok" if b.get("success") else "failed"
    target = f" {b['target']}" if b.get("target") else ""
    where = f" from {b['remote_addr']}" if b.get("remote_addr") else ""
    return f"{b.get('actor', '')} {b.get('action', '')}{target}{where}: {result}"


def _heartbeat(b: dict[str, Any]) -> str:
    return (
        f"{b.get('mode', '')} {b.get('hostname', '')} v{b.get('version', '')}, up "
        f"{duration(float(b.get('uptime_seconds') or 0))}, {_i(b, 'collectors_running')} collectors, "
        f"outbox {count(_i(b, 'outbox_lag_events'))} events"
    )


_SUMMARIES = {
    "flow": _flow,
    "process": _process,
    "host": _host,
    "snmp": _snmp,
    "device": _device,
    "loss": _loss,
    "alert": _alert,
    "audit": _audit,
    "heartbeat": _heartbeat,
}


def mac_text(value: str) -> str:
    """A MAC from protobuf JSON (base64 bytes) or already as text, as aa:bb:cc:dd:ee:ff."""
    if not value or ":" in value:
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.hex(":") if len(raw) in (6, 8) else value


def summary(kind: str, body: dict[str, Any] | None) -> str:
    """One readable line about an event of `kind` from its body (protobuf JSON)."""
    if not body:
        return ""
    fn = _SUMMARIES.get(kind)
    if fn is None:
        return ", ".join(f"{k}={v}" for k, v in body.items() if not isinstance(v, dict | list))[:200]
    try:
        return fn(body)
    except (TypeError, ValueError, AttributeError, KeyError):  # a body this code does not know the shape of
        return ""


# ---------------------------------------------------------------------- typed detail of one event
_LABELS = {
    "src_addr": "source address",
    "dst_addr": "destination address",
    "src_port": "source port",
    "dst_port": "destination port",
    "ppid": "parent PID",
    "pid": "PID",
    "uid": "UID",
    "exe": "executable",
    "argv": "command line",
    "cwd": "working directory",
    "rss_bytes": "resident memory",
    "community_id": "Community ID",
    "if_index": "ifIndex",
    "speed_bps": "speed",
    "in_bps": "in",
    "out_bps": "out",
}


def label(key: str) -> str:
    """A field name as a person reads it ("rss_bytes" → "resident memory", "first_ts_ns" → "first ts")."""
    if key in _LABELS:
        return _LABELS[key]
    for suffix in ("_ns", "_bytes", "_seconds", "_bps", "_ticks", "_percent"):
        key = key.removesuffix(suffix)
    return key.replace("_", " ")


def value(key: str, v: Any, *, kind: str = "") -> str:
    """One field's value with its unit, chosen by the field's name (protobuf JSON: 64-bit numbers come
    as strings)."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    try:
        if key.endswith("_ns") and key != "lifetime_ns":
            return iso(v) or "—"
        if key == "lifetime_ns":
            return duration(int(v) / 1e9)
        if key.endswith(("_bytes", "_octets")) or key == "octets":
            return _bytes(v)
        if key.endswith("_seconds"):
            return duration(float(v))
        if key.endswith("_bps"):
            return bit_rate(float(v))
        if key.endswith("_ticks"):
            return uptime(v)
        if key.endswith("_percent") or key == "celsius":
            return f"{float(v):.1f} {'°C' if key == 'celsius' else '%'}"
        if key == "protocol" and kind == "flow":
            return f"{protocol_name(int(v))} ({int(v)})"
        if key in ("mac", "previous_mac", "src_mac", "dst_mac", "phys_address"):
            return mac_text(str(v))
        if key in ("packets", "count") or key.endswith(("_pkts", "_count", "_events")):
            return count(v)
    except (TypeError, ValueError):
        pass
    return str(v)


def fields(kind: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """An event body as typed rows: `rows` [(label, text)] for its scalar and nested fields
    ("forward packets"), and `tables` [(label, columns, rows)] for its lists of records (interfaces,
    disks), each value with its unit."""
    rows: list[tuple[str, str]] = []
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    for key, v in (body or {}).items():
        if isinstance(v, dict) and key != "attributes":
            rows += [(f"{label(key)} {label(k)}", value(k, x, kind=kind)) for k, x in v.items()]
        elif isinstance(v, dict):
            rows += [(f"{label(key)}: {k}", str(x)) for k, x in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            columns = list(dict.fromkeys(k for x in v for k in x))
            cells = [[value(c, x[c], kind=kind) if c in x else "" for c in columns] for x in v[:500]]
            tables.append((label(key), [label(c) for c in columns], cells))
        else:
            rows.append((label(key), value(key, v, kind=kind)))
    if kind == "flow" and body:
        proto = _i(body, "protocol")
        service = flow_service(proto, _i(body, "src_port"), _i(body, "dst_port"))
        if service:
            rows.append(("service", service))
        if body.get("first_ts_ns") and body.get("last_ts_ns"):
            rows.append(("duration", duration((_i(body, "last_ts_ns") - _i(body, "first_ts_ns")) / 1e9)))
    return {"rows": rows, "tables": tables}
