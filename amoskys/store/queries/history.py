"""Exec/exit history and the audit log, over the read model's `process_history` and `audit` tables.

Pages are newest first by observation time, keyed by (ts_ns, store_seq) on the tables' ts indexes; the
event's identity (event_id, boot_id, source_seq, received_ns) is joined from `events` for the page's
rows only.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from amoskys.store.queries.reader import Reader, proto3

_IDENTITY = "e.event_id, e.boot_id, e.source_seq, e.received_ns"


def _page_sql(table: str, columns: str, where: list[str], before: int | None) -> str:
    if before is not None:
        where = [*where, f"(ts_ns, store_seq) < (SELECT ts_ns, store_seq FROM {table} WHERE store_seq = ?)"]
    inner = f"SELECT {columns} FROM {table}"
    if where:
        inner += " WHERE " + " AND ".join(where)
    inner += " ORDER BY ts_ns DESC, store_seq DESC LIMIT ?"
    return (
        f"SELECT t.*, {_IDENTITY} FROM ({inner}) t JOIN events e ON e.store_seq = t.store_seq "
        "ORDER BY t.ts_ns DESC, t.store_seq DESC"
    )


def _identity(r: Any, kind: str) -> dict[str, Any]:
    return {
        "store_seq": r["store_seq"],
        "event_id": r["event_id"],
        "source": r["source"],
        "origin": r["origin"],
        "synthetic": bool(r["synthetic"]),
        "boot_id": r["boot_id"],
        "source_seq": r["source_seq"],
        "kind": kind,
        "ts_ns": r["ts_ns"],
        "received_ns": r["received_ns"],
    }


_EXEC_COLUMNS = (
    "store_seq, source, origin, synthetic, ts_ns, kind, pid, ppid, exe, comm, argv, argv_redacted, user, "
    "uid, start_time_ns, exit_code, exit_signal, lifetime_ns, exe_sha256, container_id"
)


#: exec history rows a substring search (`q`) looks through per page: the newest ones of the page's
#: window (before its `before` key), so a page costs the same however long the history is
SEARCH_WINDOW = 20_000


async def execs(
    reader: Reader,
    *,
    source: str | None = None,
    exe: str | None = None,
    comm: str | None = None,
    q: str = "",
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Up to `limit` exec and exit events, newest first, of one `source`, `exe` (full path) or `comm`
    (base name) when given, and whose exe, command line or user contains `q` (case-insensitive; among the
    newest SEARCH_WINDOW of the page's window); after the event with store_seq `before` in that order."""
    where: list[str] = []
    params: list[Any] = []
    for clause, value in (("source = ?", source), ("exe = ?", exe), ("comm = ?", comm)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if before is not None:
        params.append(before)
    if not q:
        sql = _page_sql("process_history", _EXEC_COLUMNS, where, before)
        return [exec_item(r) for r in await reader.rows(sql, (*params, limit))]
    if before is not None:
        where = [
            *where,
            "(ts_ns, store_seq) < (SELECT ts_ns, store_seq FROM process_history WHERE store_seq = ?)",
        ]
    window = f"SELECT {_EXEC_COLUMNS} FROM process_history"
    if where:
        window += " WHERE " + " AND ".join(where)
    order = "ORDER BY ts_ns DESC, store_seq DESC"
    sql = (
        f"SELECT t.*, {_IDENTITY} FROM (SELECT * FROM ({window} {order} LIMIT ?) "
        f"WHERE instr(lower(exe), ?) OR instr(lower(user), ?) OR instr(lower(argv), ?) {order} LIMIT ?) t "
        "JOIN events e ON e.store_seq = t.store_seq ORDER BY t.ts_ns DESC, t.store_seq DESC"
    )
    low = q.lower()
    rows = await reader.rows(sql, (*params, SEARCH_WINDOW, low, low, low, limit))
    return [exec_item(r) for r in rows]


async def execs_by_seq(reader: Reader, seqs: list[int]) -> list[dict[str, Any]]:
    """The exec and exit events with these store_seq values, newest first."""
    sql = (
        f"SELECT t.*, {_IDENTITY} FROM (SELECT {_EXEC_COLUMNS} FROM process_history "
        "WHERE store_seq IN (SELECT value FROM json_each(?))) t JOIN events e ON e.store_seq = t.store_seq "
        "ORDER BY t.ts_ns DESC, t.store_seq DESC"
    )
    return [exec_item(r) for r in await reader.rows(sql, (json.dumps(seqs),))]


def exec_item(r: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": r["kind"].upper(),
        "pid": r["pid"],
        "ppid": r["ppid"],
        "exe": r["exe"],
        "comm": r["comm"],
        "argv": json.loads(r["argv"]),
        "argv_redacted": bool(r["argv_redacted"]),
        "user": r["user"],
        "uid": r["uid"],
        "start_time_ns": r["start_time_ns"],
        "lifetime_ns": r["lifetime_ns"],
        "exe_sha256": r["exe_sha256"].hex() if r["exe_sha256"] else "",
        "container_id": r["container_id"],
    }
    if r["exit_code"] is not None:
        body["exit_code"] = r["exit_code"]
    if r["exit_signal"] is not None:
        body["exit_signal"] = r["exit_signal"]
    return _identity(r, "process") | {"body": proto3(body)}


_AUDIT_COLUMNS = (
    "store_seq, source, origin, synthetic, ts_ns, actor, action, target, remote_addr, success, detail"
)


async def audit(
    reader: Reader,
    *,
    scope: Literal["local", "remote"] = "local",
    actor: str | None = None,
    action: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Up to `limit` audit events, newest first: the appliance's own (`scope` "local": empty origin)
    or those that came through the bus ("remote"), of one `actor` or `action` when given."""
    where = ["origin = ''" if scope == "local" else "origin != ''"]
    params: list[Any] = []
    for clause, value in (("actor = ?", actor), ("action = ?", action)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if before is not None:
        params.append(before)
    rows = await reader.rows(_page_sql("audit", _AUDIT_COLUMNS, where, before), (*params, limit))
    return [
        _identity(r, "audit")
        | {
            "body": proto3(
                {
                    "actor": r["actor"],
                    "action": r["action"],
                    "target": r["target"],
                    "remote_addr": r["remote_addr"],
                    "success": bool(r["success"]),
                    "detail": r["detail"],
                }
            )
        }
        for r in rows
    ]
