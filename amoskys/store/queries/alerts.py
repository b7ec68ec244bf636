"""Alerts for the dashboard, over the read model's `alerts` rows (one per alert: amoskys.detections), the
kept evidence (`alert_evidence`) and the suppressions (`alert_suppressions`).

A page is one statement in the reader's thread, newest match first, keyed by (last_seen_ns, store_seq)
on the table's indexes; each row's evidence event ids are resolved to the store_seq of the event (in
`events`, else among the evidence kept past retention) in the same statement, so every evidence id is a
link to the event's detail view. Nothing here decodes protobuf but `kept_evidence`, one event's detail.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from google.protobuf.message import DecodeError

from amoskys.proto import events_pb2
from amoskys.store.alerts import CLOSED_STATES, TRIAGE_STATES
from amoskys.store.alerts import LEVELS as _LEVELS
from amoskys.store.queries.reader import Reader
from amoskys.store.records import StoredEvent

#: the states an analyst still has to act on
OPEN_STATES = tuple(s for s in TRIAGE_STATES if s not in CLOSED_STATES)
#: Sigma's levels, lowest first
LEVELS = tuple(lv for lv in _LEVELS if lv)
StateFilter = Literal["open", "any", "new", "acknowledged", "resolved", "false_positive"]
#: suppressions one answer lists at most
SUPPRESSIONS_LIMIT = 500


def _open(column: str) -> str:
    return f"{column} IN ({', '.join(repr(s) for s in OPEN_STATES)})"


#: synthetic (loadgen) open alerts counted at most: a loadgen run leaves hundreds of thousands open, and
#: counting them all on every overview (and every live tick) grew with the store
SYNTHETIC_COUNT_CAP = 1_000

# the open alerts on observed events: `synthetic = 0` written out so that the planner takes the partial
# index alerts_open (synthetic, level) and counts index entries only
_OPEN_OBSERVED = f"SELECT COUNT(*) FROM alerts WHERE synthetic = 0 AND {_open('state')}"

# evidence ids of the row, each with the store_seq where it can be read ([event_id, store_seq|null])
_EVIDENCE = """(
    SELECT json_group_array(json_array(j.value, COALESCE(
        (SELECT e.store_seq FROM events e WHERE e.source = a.host AND e.event_id = j.value),
        (SELECT k.store_seq FROM alert_evidence k WHERE k.source = a.host AND k.event_id = j.value))))
    FROM json_each(a.related_event_ids) j
) AS evidence"""

_COLUMNS = (
    "a.store_seq, a.alert_id, a.source, a.origin, a.synthetic, a.ts_ns, a.rule, a.severity, a.summary, "
    "a.attributes, a.rule_id, a.title, a.level, a.tags, a.host, a.count, a.first_seen_ns, a.last_seen_ns, "
    "a.last_seq, a.state, a.state_by, a.state_ns, a.state_note"
)


def _filters(
    *,
    level: str | None,
    state: StateFilter,
    rule: str | None,
    host: str | None,
    synthetic: bool | None,
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if state == "open":
        where.append(_open("a.state"))
    elif state != "any":
        where.append("a.state = ?")
        params.append(state)
    if level is not None:
        where.append("a.level = ?")
        params.append(level)
    if rule is not None:  # a Sigma rule's id, or a built-in rule's name (rows without rule_id)
        where.append("(a.rule_id = ? OR (a.rule_id = '' AND a.rule = ?))")
        params += [rule, rule]
    if host is not None:
        where.append("a.host = ?")
        params.append(host)
    if synthetic is not None:
        where.append("a.synthetic = 1" if synthetic else "a.synthetic = 0")
    return where, params


async def page(
    reader: Reader,
    *,
    level: str | None = None,
    state: StateFilter = "open",
    rule: str | None = None,
    host: str | None = None,
    synthetic: bool | None = None,
    before: tuple[int, int] | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` alerts, latest match first, filtered; after `before` = (last_seen_ns, store_seq)
    of the previous page's last item. Also the number of open alerts (observed ones: synthetic left out),
    from the same statement."""
    where, params = _filters(level=level, state=state, rule=rule, host=host, synthetic=synthetic)
    if before is not None:
        where.append("(a.last_seen_ns, a.store_seq) < (?, ?)")
        params += list(before)
    inner = f"SELECT {_COLUMNS}, {_EVIDENCE} FROM alerts a"
    if where:
        inner += " WHERE " + " AND ".join(where)
    inner += " ORDER BY a.last_seen_ns DESC, a.store_seq DESC LIMIT ?"
    # one row at least (the open count, with NULLs when no alert matched): one statement, one hop
    sql = (
        f"SELECT w.open_total, p.* FROM (SELECT ({_OPEN_OBSERVED}) AS open_total) w LEFT JOIN ({inner}) p ON 1 "
        "ORDER BY p.last_seen_ns DESC, p.store_seq DESC"
    )
    rows = await reader.rows(sql, (*params, limit))
    open_total = int(rows[0]["open_total"]) if rows else 0
    return [item(r) for r in rows if r["store_seq"] is not None], open_total


async def one(reader: Reader, store_seq: int) -> dict[str, Any] | None:
    """One alert by its key (the store_seq of its first Alert event)."""
    rows = await reader.rows(
        f"SELECT {_COLUMNS}, {_EVIDENCE} FROM alerts a WHERE a.store_seq = ?", (store_seq,)
    )
    return item(rows[0]) if rows else None


def item(r: Any) -> dict[str, Any]:
    """The API's object of one alert row."""
    evidence = json.loads(r["evidence"]) if r["evidence"] else []
    return {
        "id": r["store_seq"],
        "alert_id": r["alert_id"],
        "rule_id": r["rule_id"],
        "rule": r["rule_id"] or r["rule"],
        "title": r["title"] or r["summary"],
        "level": r["level"],
        "tags": json.loads(r["tags"]) if r["tags"] else [],
        "host": r["host"] or r["source"],
        "summary": r["summary"],
        "attributes": json.loads(r["attributes"]) if r["attributes"] else {},
        "count": r["count"],
        "first_seen_ns": r["first_seen_ns"] or r["ts_ns"],
        "last_seen_ns": r["last_seen_ns"] or r["ts_ns"],
        "state": r["state"],
        "state_by": r["state_by"],
        "state_ns": r["state_ns"],
        "state_note": r["state_note"],
        "source": r["source"],
        "origin": r["origin"],
        "synthetic": bool(r["synthetic"]),
        "store_seq": r["store_seq"],
        "last_seq": r["last_seq"] or r["store_seq"],
        "evidence": [{"event_id": eid, "store_seq": seq} for eid, seq in evidence],
    }


# grouped as the partial index alerts_open is ordered, so the planner counts on that index alone
# open alerts by level: observed ones all counted, synthetic ones up to the cap (both on alerts_open)
_COUNTS_SQL = f"""
SELECT 0 AS synthetic, level, COUNT(*) AS n FROM alerts WHERE synthetic = 0 AND {_open("state")}
GROUP BY level
UNION ALL
SELECT 1, level, COUNT(*) FROM (
    SELECT level FROM alerts WHERE synthetic = 1 AND {_open("state")} LIMIT {SYNTHETIC_COUNT_CAP + 1}
) GROUP BY level
"""


async def open_counts(reader: Reader, *, synthetic: bool = False) -> dict[str, Any]:
    """Open alerts (new or acknowledged): in all and by level; synthetic ones (from loadgen identities)
    counted apart, and in the totals only when `synthetic`. Synthetic ones are counted up to
    SYNTHETIC_COUNT_CAP and one more: `synthetic_capped` says there are more than the cap, and the
    counts that include them are lower bounds."""
    by_level: dict[str, int] = {}
    total = synthetic_total = 0
    for r in await reader.rows(_COUNTS_SQL):
        n = int(r["n"])
        if r["synthetic"]:
            synthetic_total += n
            if not synthetic:
                continue
        total += n
        by_level[r["level"] or "unknown"] = by_level.get(r["level"] or "unknown", 0) + n
    ordered = {lv: by_level[lv] for lv in (*reversed(LEVELS), "unknown") if lv in by_level}
    capped = synthetic_total > SYNTHETIC_COUNT_CAP
    return {
        "open": total,
        "by_level": ordered,
        "synthetic_open": synthetic_total,
        "synthetic_capped": capped,
    }


_SUPPRESSIONS_SQL = f"""
SELECT id, rule_id, host, field, value, reason, created_by, created_ns, expires_ns, removed_by, removed_ns,
       hits, last_hit_ns
FROM alert_suppressions
WHERE ?1 OR (removed_ns IS NULL AND expires_ns > ?2)
ORDER BY created_ns DESC LIMIT {SUPPRESSIONS_LIMIT}
"""


async def suppressions(reader: Reader, now_ns: int, *, ended: bool = False) -> list[dict[str, Any]]:
    """The active suppressions (not removed, not expired at `now_ns`), newest first; with `ended`, the
    removed and expired ones too, each with whether it is active."""
    rows = await reader.dicts(_SUPPRESSIONS_SQL, (1 if ended else 0, now_ns))
    for r in rows:
        r["active"] = r["removed_ns"] is None and r["expires_ns"] > now_ns
    return rows


_KEPT_SQL = (
    "SELECT store_seq, event_id, source, kind, ts_ns, received_ns, envelope FROM alert_evidence "
    "WHERE store_seq = ? LIMIT 1"
)


async def kept_evidence(reader: Reader, store_seq: int) -> StoredEvent | None:
    """An evidence event of an unresolved alert that retention took out of the log (kept in
    `alert_evidence`), for its detail view. Its boot_id and source_seq are read from the envelope (one
    event: decoded on the loop); its chain digest and the identity it came through are not kept."""
    rows = await reader.rows(_KEPT_SQL, (store_seq,))
    if not rows:
        return None
    r = rows[0]
    try:
        env = events_pb2.Envelope.FromString(r["envelope"])
    except DecodeError:  # shown as such by the detail view (its body does not parse either)
        env = events_pb2.Envelope()
    return StoredEvent(
        store_seq=r["store_seq"],
        event_id=r["event_id"],
        source=r["source"],
        boot_id=env.boot_id,
        source_seq=env.source_seq,
        kind=r["kind"],
        ts_ns=r["ts_ns"],
        received_ns=r["received_ns"],
        envelope=r["envelope"],
        digest=b"",
    )
