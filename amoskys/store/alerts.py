"""The alert rows' SQL: how Alert events and triage AuditEvents fold into the `alerts` read model, and
the detections' appliance state (suppressions, rule switches, the cursor) as writer ops.

An alert is one row of `alerts`, opened by its first Alert event (keyed by that event's store_seq;
`alert_id` is its event_id). A follow-up Alert event names the first one in `Alert.alert_id` and
updates the row: the counts and times only grow (MAX), so a follow-up and the runtime's own repeat
count (`AlertSeen`) may arrive in any order and any number of times. A triage AuditEvent (action
TRIAGE_ACTION, from this appliance only) sets the row's state. Writes ride the writer's group commit
(`Store.submit_ops`); reads take the caller's aiosqlite connection and return plain values.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import aiosqlite
import msgspec

#: Sigma's levels by Alert.Level number (0: unspecified).
LEVELS = ("", "informational", "low", "medium", "high", "critical")
#: The legacy Alert.severity of each level (old readers keep working).
SEVERITY_OF_LEVEL = {"": 0, "informational": 1, "low": 1, "medium": 2, "high": 3, "critical": 3}
#: The level of a legacy alert that has only a severity.
LEVEL_OF_SEVERITY = {1: "informational", 2: "medium", 3: "critical"}
TRIAGE_STATES = ("new", "acknowledged", "resolved", "false_positive")
#: States whose alert is closed: a new match opens a new alert; retention may delete the row.
CLOSED_STATES = ("resolved", "false_positive")
#: The AuditEvent action that triages an alert; its detail is TriageDetail as JSON.
TRIAGE_ACTION = "alert_triage"
#: Evidence event ids kept on one row.
MAX_EVIDENCE = 20

_JSON = msgspec.json.Encoder(order="sorted")


def json_text(value: Any) -> str:
    return _JSON.encode(value).decode()


class TriageDetail(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The detail of a triage AuditEvent."""

    alert_id: str
    state: str
    note: str = ""


_TRIAGE_DECODER = msgspec.json.Decoder(TriageDetail)


def triage_detail(detail: str) -> TriageDetail | None:
    """The triage a detail string asks for, or None when it is not one (never raises)."""
    try:
        t = _TRIAGE_DECODER.decode(detail)
    except msgspec.DecodeError:
        return None
    return t if t.state in TRIAGE_STATES and t.alert_id else None


# ---------------------------------------------------------------------- the view's statements

INSERT_ALERT = (
    "INSERT INTO alerts (store_seq, source, origin, synthetic, ts_ns, rule, severity, summary, attributes, "
    "related_event_ids, alert_id, rule_id, title, level, tags, host, count, first_seen_ns, last_seen_ns, "
    "last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# (count, first_seen_ns, last_seen_ns, last_seq, evidence JSON array, alert_id, source): only the
# publisher of an alert's first event updates it (another source cannot bump this appliance's alerts)
UPDATE_ALERT = f"""
UPDATE alerts SET
    count = MAX(count, ?1),
    first_seen_ns = MIN(first_seen_ns, ?2),
    last_seen_ns = MAX(last_seen_ns, ?3),
    last_seq = MAX(last_seq, ?4),
    related_event_ids = CASE WHEN json_array_length(related_event_ids) >= {MAX_EVIDENCE:d}
        THEN related_event_ids
        ELSE (SELECT json_group_array(value) FROM (
            SELECT value FROM json_each(alerts.related_event_ids)
            UNION ALL
            SELECT value FROM json_each(?5)
                WHERE value NOT IN (SELECT value FROM json_each(alerts.related_event_ids))
            LIMIT {MAX_EVIDENCE:d}))
        END
WHERE alert_id = ?6 AND source = ?7
"""

# (state, state_by, state_ns, state_note, alert_id, state_ns): the newest triage wins
TRIAGE_ALERT = "UPDATE alerts SET state = ?, state_by = ?, state_ns = ?, state_note = ? WHERE alert_id = ? AND state_ns <= ?"

# ---------------------------------------------------------------------- retention (amoskys.store.space)

#: Copy the evidence events of unresolved alerts that are about to be deleted (store_seq <= ?).
KEEP_EVIDENCE = """
INSERT OR IGNORE INTO alert_evidence (source, event_id, store_seq, kind, ts_ns, received_ns, envelope)
SELECT e.source, e.event_id, e.store_seq, e.kind, e.ts_ns, e.received_ns, e.envelope
FROM alerts a, json_each(a.related_event_ids) j
JOIN events e ON e.source = a.host AND e.event_id = j.value
WHERE a.state NOT IN ('resolved', 'false_positive') AND a.synthetic = 0 AND e.store_seq <= ?
"""
#: The rows of `alerts` that retention deletes (store_seq <= ?): closed alerts, and every alert of
#: loadgen's (synthetic: a load test's alerts would otherwise pile up unresolved for good).
DELETE_CLOSED_ALERTS = (
    "DELETE FROM alerts WHERE store_seq <= ? AND (state IN ('resolved', 'false_positive') OR synthetic = 1)"
)
#: Forget kept evidence no unresolved alert names any more.
FORGET_EVIDENCE = """
DELETE FROM alert_evidence WHERE (source, event_id) NOT IN (
    SELECT a.host, j.value FROM alerts a, json_each(a.related_event_ids) j
    WHERE a.state NOT IN ('resolved', 'false_positive') AND a.synthetic = 0)
"""


# ---------------------------------------------------------------------- writer ops


@dataclass(frozen=True, slots=True)
class AlertSeen:
    """Repeats of an open alert counted by the runtime between its events: the row's count and last
    seen time grow to these (never shrink), and new evidence ids are added (up to MAX_EVIDENCE)."""

    alert_id: str
    source: str  # the alert's publisher (this appliance)
    count: int
    first_seen_ns: int
    last_seen_ns: int
    evidence: tuple[str, ...] = ()

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.execute(
            UPDATE_ALERT,
            (
                self.count,
                self.first_seen_ns,
                self.last_seen_ns,
                0,
                json_text(list(self.evidence)),
                self.alert_id,
                self.source,
            ),
        )


@dataclass(frozen=True, slots=True)
class Suppression:
    """One row of `alert_suppressions`."""

    id: str
    rule_id: str
    host: str  # '' = every host
    field: str
    value: str
    reason: str
    created_by: str
    created_ns: int
    expires_ns: int
    removed_by: str = ""
    removed_ns: int | None = None
    hits: int = 0
    last_hit_ns: int = 0

    def active(self, now_ns: int) -> bool:
        return self.removed_ns is None and now_ns < self.expires_ns


@dataclass(frozen=True, slots=True)
class AddSuppression:
    s: Suppression

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        s = self.s
        conn.execute(
            "INSERT INTO alert_suppressions (id, rule_id, host, field, value, reason, created_by, created_ns, "
            "expires_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.rule_id, s.host, s.field, s.value, s.reason, s.created_by, s.created_ns, s.expires_ns),
        )


@dataclass(frozen=True, slots=True)
class RemoveSuppression:
    id: str
    removed_by: str
    removed_ns: int

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.execute(
            "UPDATE alert_suppressions SET removed_by = ?, removed_ns = ? WHERE id = ? AND removed_ns IS NULL",
            (self.removed_by, self.removed_ns, self.id),
        )


@dataclass(frozen=True, slots=True)
class CountSuppressed:
    """Matches a suppression kept from raising alerts: (id, hits, last_hit_ns) added up."""

    hits: tuple[tuple[str, int, int], ...]

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.executemany(
            "UPDATE alert_suppressions SET hits = hits + ?, last_hit_ns = MAX(last_hit_ns, ?) WHERE id = ?",
            [(n, t, i) for i, n, t in self.hits],
        )


@dataclass(frozen=True, slots=True)
class SetRuleEnabled:
    rule_id: str
    enabled: bool
    changed_by: str
    changed_ns: int

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.execute(
            "INSERT INTO detection_rules (rule_id, enabled, changed_by, changed_ns) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (rule_id) DO UPDATE SET enabled = excluded.enabled, changed_by = excluded.changed_by, "
            "changed_ns = excluded.changed_ns",
            (self.rule_id, 1 if self.enabled else 0, self.changed_by, self.changed_ns),
        )


@dataclass(frozen=True, slots=True)
class SaveCursor:
    """The detections' position: every event up to store_seq was evaluated (never moves back)."""

    name: str
    store_seq: int

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.execute(
            "INSERT INTO detection_cursor (name, store_seq, updated_ns) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET store_seq = MAX(store_seq, excluded.store_seq), "
            "updated_ns = excluded.updated_ns",
            (self.name, self.store_seq, now_ns),
        )


# ---------------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert a new match may still count toward (not closed)."""

    store_seq: int
    alert_id: str
    rule_id: str
    host: str
    count: int
    first_seen_ns: int
    last_seen_ns: int
    state: str
    evidence: tuple[str, ...] = ()


_OPEN_COLUMNS = (
    "store_seq, alert_id, rule_id, host, count, first_seen_ns, last_seen_ns, state, related_event_ids"
)
_EVIDENCE = msgspec.json.Decoder(list[str])


def _open_alert(row: Any) -> OpenAlert:
    seq, aid, rule, host, count, first, last, state, evidence = row
    try:
        ids = tuple(_EVIDENCE.decode(evidence))
    except msgspec.DecodeError:
        ids = ()
    return OpenAlert(
        int(seq), str(aid), str(rule), str(host), int(count), int(first), int(last), str(state), ids
    )


async def open_alerts(conn: aiosqlite.Connection, *, seen_since_ns: int) -> list[OpenAlert]:
    """Alerts of rules (rule_id set) not closed and seen since `seen_since_ns`."""
    rows = await conn.execute_fetchall(
        f"SELECT {_OPEN_COLUMNS} FROM alerts WHERE last_seen_ns >= ? AND rule_id != '' "
        "AND state NOT IN ('resolved', 'false_positive') ORDER BY last_seen_ns",
        (seen_since_ns,),
    )
    return [_open_alert(r) for r in rows]


async def alert_by_seq(conn: aiosqlite.Connection, store_seq: int) -> OpenAlert | None:
    rows = list(
        await conn.execute_fetchall(f"SELECT {_OPEN_COLUMNS} FROM alerts WHERE store_seq = ?", (store_seq,))
    )
    return _open_alert(rows[0]) if rows else None


_SUPPRESSION_COLUMNS = (
    "id, rule_id, host, field, value, reason, created_by, created_ns, expires_ns, removed_by, removed_ns, "
    "hits, last_hit_ns"
)


def _suppression(row: Any) -> Suppression:
    i, rule, host, field, value, reason, by, created, expires, removed_by, removed, hits, last = row
    return Suppression(
        str(i),
        str(rule),
        str(host),
        str(field),
        str(value),
        str(reason),
        str(by),
        int(created),
        int(expires),
        str(removed_by),
        None if removed is None else int(removed),
        int(hits),
        int(last),
    )


async def suppressions(
    conn: aiosqlite.Connection, *, active_at_ns: int | None = None, limit: int = 1000
) -> list[Suppression]:
    """Suppressions, newest first: only those active at `active_at_ns` when given."""
    if active_at_ns is None:
        rows = await conn.execute_fetchall(
            f"SELECT {_SUPPRESSION_COLUMNS} FROM alert_suppressions ORDER BY created_ns DESC LIMIT ?",
            (limit,),
        )
    else:
        rows = await conn.execute_fetchall(
            f"SELECT {_SUPPRESSION_COLUMNS} FROM alert_suppressions WHERE removed_ns IS NULL AND expires_ns > ? "
            "ORDER BY created_ns DESC LIMIT ?",
            (active_at_ns, limit),
        )
    return [_suppression(r) for r in rows]


async def suppression(conn: aiosqlite.Connection, sid: str) -> Suppression | None:
    rows = list(
        await conn.execute_fetchall(
            f"SELECT {_SUPPRESSION_COLUMNS} FROM alert_suppressions WHERE id = ?", (sid,)
        )
    )
    return _suppression(rows[0]) if rows else None


async def disabled_rules(conn: aiosqlite.Connection) -> frozenset[str]:
    rows = await conn.execute_fetchall("SELECT rule_id FROM detection_rules WHERE enabled = 0")
    return frozenset(str(r[0]) for r in rows)


async def cursor(conn: aiosqlite.Connection, name: str) -> int | None:
    rows = list(await conn.execute_fetchall("SELECT store_seq FROM detection_cursor WHERE name = ?", (name,)))
    return int(rows[0][0]) if rows else None
