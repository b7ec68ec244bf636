"""`amoskys status` and `amoskys collectors start|stop|restart NAME`: asking the running appliance.

Exit codes: 0 done; 1 no appliance runs with that data dir; 2 the appliance refused the command (an
unknown collector, say) or could not be talked to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from amoskys.cli.common import add_common, data_dir, load_config
from amoskys.errors import ControlError
from amoskys.paths import Layout

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


EXIT_OK, EXIT_NOT_RUNNING, EXIT_REFUSED = 0, 1, 2
EXIT_NOTHING = 1  # nothing to act on (no such collector)


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("status", help="show the running appliance (or agent) and its collectors")
    add_common(p)
    _add_agent_flag(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_status)

    p = sub.add_parser("collectors", help="start, stop or restart a collector of the running appliance")
    p.add_argument("action", choices=["start", "stop", "restart"])
    p.add_argument("name", metavar="NAME", help="collector name (see `amoskys status`)")
    add_common(p)
    _add_agent_flag(p)
    p.set_defaults(func=_collectors)


def _add_agent_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agent",
        action="store_true",
        help="the agent on this host (`amoskys agent`): its default data dir, not the appliance's",
    )


def _status(args: argparse.Namespace) -> int:
    root, _ = data_dir(args, load_config(args))
    return cmd_status(root, as_json=args.json)


def _collectors(args: argparse.Namespace) -> int:
    root, _ = data_dir(args, load_config(args))
    return cmd_collectors(root, args.action, args.name)


def cmd_status(
    data_dir: Path, *, as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Print the running appliance's status: a table, or the raw reply with `as_json`."""
    out, err = out or sys.stdout, err or sys.stderr
    reply, code = _ask(data_dir, {"cmd": "status"}, err)
    if reply is None:
        return code
    if as_json:
        out.write(json.dumps(reply, indent=2) + "\n")
    else:
        out.write(format_status(reply))
    return EXIT_OK


def cmd_collectors(
    data_dir: Path, action: str, name: str, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Start, stop or restart one collector of the running appliance and print its new state."""
    out, err = out or sys.stdout, err or sys.stderr
    reply, code = _ask(data_dir, {"cmd": "collectors", "action": action, "name": name}, err)
    if reply is None:
        return code
    status = reply.get("collector", {})
    out.write(f"{name}: {_state_text(status)}\n")
    return EXIT_OK


def _ask(data_dir: Path, message: Mapping[str, Any], err: TextIO) -> tuple[dict[str, Any] | None, int]:
    from amoskys.control import NotRunningError, request

    layout = Layout(data_dir)
    try:
        reply = request(layout.control_socket, message)
    except NotRunningError as e:
        err.write(f"amoskys: {e}{_run_json_note(layout.run_json)}\n")
        return None, EXIT_NOT_RUNNING
    except ControlError as e:
        err.write(f"amoskys: error: {e}\n")
        return None, EXIT_REFUSED
    if not reply.get("ok"):
        err.write(f"amoskys: error: {reply.get('error', 'the appliance refused the command')}\n")
        return None, EXIT_NOTHING if reply.get("not_found") or reply.get("nothing_to_do") else EXIT_REFUSED
    return reply, EXIT_OK


def _run_json_note(run_json: Path) -> str:
    """What run.json says, when it says something useful about why nobody answers."""
    try:
        info = json.loads(run_json.read_text())
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as e:
        return f"; {run_json} is unreadable ({e})"
    pid = info.get("pid") if isinstance(info, dict) else None
    if not isinstance(pid, int):
        return f"; {run_json} names no pid"
    if not _pid_alive(pid):
        return f"; {run_json} is stale: pid {pid} is not running"
    return f"; {run_json} names pid {pid}, which is alive but does not answer on the control socket"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


# ---------------------------------------------------------------------- formatting
def _state_text(status: Mapping[str, Any]) -> str:
    state, reason = status.get("state", "?"), status.get("reason", "")
    return f"{state}: {reason}" if reason else str(state)


def _ago(ns: int, now_ns: int) -> str:
    return _duration(max(0, now_ns - ns) / 1e9) + " ago"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _value(key: str, value: Any) -> str:
    if key.endswith("_seconds") and isinstance(value, int | float):
        return _duration(value)
    if key.endswith("_ns") and isinstance(value, int):
        return datetime.fromtimestamp(value / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, Mapping):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _label(key: str) -> str:
    for suffix in ("_seconds", "_ns"):
        key = key.removesuffix(suffix)
    return key.replace("_", " ")


def _table(rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _forwarders(forwarders: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per forwarder (after a blank line), and why one retries or stopped."""
    if not forwarders:
        return []
    rows = [["FORWARDER", "LAG_EVENTS", "LAG_S", "SENT", "RETRIES", "DUPLICATES", "REJECTED", "STATE"]]
    notes: dict[int, str] = {}
    for f in forwarders:
        target = f.get("address")
        rows.append(
            [
                f"{f.get('name', '?')} -> {target}" if target else str(f.get("name", "?")),
                str(f.get("lag_events", 0)),
                f"{float(f.get('lag_seconds', 0.0)):.1f}",
                str(f.get("sent", 0)),
                str(f.get("retries", 0)),
                str(f.get("duplicates", 0)),
                str(f.get("rejected", 0)),
                str(f.get("state", "?")),
            ]
        )
        if f.get("reason"):
            notes[len(rows) - 1] = str(f["reason"])
    lines = [""]
    for i, line in enumerate(_table(rows, right={1, 2, 3, 4, 5, 6})):
        lines.append(line)
        if i in notes:
            lines.append(f"    {notes[i]}")
    return lines


def _sources(sources: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hub's consumer of the fleet's NATS stream ([sources.nats]): its state, then one row per box."""
    lines: list[str] = []
    for src in sources:
        lag = src.get("lag_messages")
        lines += [
            "",
            f"hub ({src.get('name', '?')}): {src.get('state', '?')}, stream {src.get('stream', '?')}, "
            f"durable {src.get('durable', '?')}, lag {'?' if lag is None else lag} messages"
            + (", acks wait for earlier deliveries" if src.get("ack_blocked") else ""),
        ]
        if src.get("reason"):
            lines.append(f"    {src['reason']}")
        boxes: Mapping[str, Mapping[str, Any]] = src.get("boxes") or {}
        if boxes:
            rows = [["BOX", "MESSAGES", "COMMITTED", "REJECTED", "SEQ_GAPS", "SOURCES"]]
            for box, b in boxes.items():
                rows.append(
                    [
                        box,
                        str(b.get("messages", 0)),
                        str(b.get("committed", 0)),
                        str(b.get("rejected", 0)),
                        str(b.get("sequence_gaps", 0)),
                        str(len(b.get("sources") or [])),
                    ]
                )
            lines += _table(rows, right={1, 2, 3, 4, 5})
    return lines


def format_status(reply: Mapping[str, Any], now_ns: int | None = None) -> str:
    """The status reply as text: the appliance's facts, then one row per collector."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    appliance = reply.get("appliance", {})
    # None: does not apply to this process (an agent has no bus connections)
    listed = ("forwarders", "sources")  # tables of their own, below the facts
    facts = [(_label(k), _value(k, v)) for k, v in appliance.items() if k not in listed and v is not None]
    lines = [f"{k + ':':<{max((len(k) for k, _ in facts), default=0) + 1}}  {v}" for k, v in facts]
    lines += _forwarders(appliance.get("forwarders") or [])
    lines += _sources(appliance.get("sources") or [])
    collectors = reply.get("collectors", [])
    if lines:
        lines.append("")
    if not collectors:
        lines.append("no collectors")
        return "\n".join(lines) + "\n"
    rows = [["COLLECTOR", "MODE", "EVENTS", "ERRORS", "RESTARTS", "BUSY_S", "STATE"]]
    notes: dict[int, str] = {}
    for c in collectors:
        rows.append(
            [
                str(c.get("name", "?")),
                str(c.get("mode") or "-"),
                str(c.get("events", 0)),
                str(c.get("errors", 0)),
                str(c.get("restarts", 0)),
                f"{float(c.get('busy_seconds', 0.0)):.3f}",
                _state_text(c),
            ]
        )
        if c.get("last_error"):
            notes[len(rows) - 1] = (
                f"last error {_ago(int(c.get('last_error_ns', 0)), now_ns)}: {c['last_error']}"
            )
    for i, line in enumerate(_table(rows, right={2, 3, 4, 5})):
        lines.append(line)
        if i in notes:
            lines.append(f"    {notes[i]}")
    return "\n".join(lines) + "\n"
