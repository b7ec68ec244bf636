"""The database schema and its versioned migrations (PRAGMA user_version).

Each migration is a script that moves the schema from version N-1 to N; they run in order, each in
its own transaction, at start. A database newer than this build is refused, never touched.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass

from amoskys.errors import StoreError
from amoskys.store import views

#: The chain digest of "no previous row": the first row ever stored chains onto it.
GENESIS_DIGEST = bytes(32)

_V1 = """
-- One row per stored event; store_seq is the commit order. Written only by the writer task.
CREATE TABLE events (
    store_seq   INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    boot_id     TEXT    NOT NULL,
    source_seq  INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    ts_ns       INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    envelope    BLOB    NOT NULL,   -- the serialized Envelope, exactly as received
    digest      BLOB    NOT NULL,   -- SHA-256(digest of the previous row || envelope)
    UNIQUE (source, event_id)
);
CREATE INDEX events_kind ON events (kind, store_seq);

-- The tip of the log: kept so an empty or pruned log still knows where it is.
CREATE TABLE store_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    store_id    TEXT    NOT NULL,   -- random, names this database in the high-water side file
    created_ns  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,   -- the highest store_seq ever assigned
    last_digest BLOB    NOT NULL,   -- the digest of the newest row (the chain tip)
    row_count   INTEGER NOT NULL    -- rows in `events`, kept incrementally
);

-- Per-publisher high-water marks, per boot: (boot_id, max_seq) recognises replays and gaps;
-- pruned_seq is the highest source_seq of that boot deleted by retention or the hard cap.
CREATE TABLE source_marks (
    source            TEXT    NOT NULL,
    boot_id           TEXT    NOT NULL,
    max_seq           INTEGER NOT NULL,
    pruned_seq        INTEGER NOT NULL DEFAULT 0,
    first_received_ns INTEGER NOT NULL,
    last_received_ns  INTEGER NOT NULL,
    PRIMARY KEY (source, boot_id)
) WITHOUT ROWID;

-- Derived views, maintained by the writer in the same transaction as the events they come from.
CREATE TABLE devices (
    source        TEXT    NOT NULL,
    device_key    TEXT    NOT NULL,   -- 'mac:<hex>' when the MAC is known, else 'ip:<address>'
    mac           BLOB    NOT NULL,
    ip            TEXT    NOT NULL,
    vendor        TEXT    NOT NULL,
    hostname      TEXT    NOT NULL,
    interface     TEXT    NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL,
    present       INTEGER NOT NULL,   -- 0 after a GONE event
    last_change   TEXT    NOT NULL,   -- new, ip_changed, mac_changed, gone, seen
    store_seq     INTEGER NOT NULL,
    PRIMARY KEY (source, device_key)
) WITHOUT ROWID;

CREATE TABLE snmp_targets (
    source       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    reachable    INTEGER NOT NULL,
    error        TEXT    NOT NULL,
    sys_name     TEXT    NOT NULL,
    sys_descr    TEXT    NOT NULL,
    sys_location TEXT    NOT NULL,
    uptime_ticks INTEGER NOT NULL,
    poll_seconds REAL    NOT NULL,
    ts_ns        INTEGER NOT NULL,
    store_seq    INTEGER NOT NULL,
    PRIMARY KEY (source, target)
) WITHOUT ROWID;

CREATE TABLE snmp_interfaces (
    source       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    if_index     INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    descr        TEXT    NOT NULL,
    alias        TEXT    NOT NULL,
    speed_bps    INTEGER NOT NULL,
    admin_status INTEGER NOT NULL,
    oper_status  INTEGER NOT NULL,
    in_octets    INTEGER NOT NULL,
    out_octets   INTEGER NOT NULL,
    in_errors    INTEGER NOT NULL,
    out_errors   INTEGER NOT NULL,
    in_discards  INTEGER NOT NULL,
    out_discards INTEGER NOT NULL,
    in_bps       REAL,               -- NULL on the first sample and after a discontinuity
    out_bps      REAL,
    ts_ns        INTEGER NOT NULL,
    store_seq    INTEGER NOT NULL,
    PRIMARY KEY (source, target, if_index)
) WITHOUT ROWID;

CREATE TABLE processes (
    source        TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    ppid          INTEGER NOT NULL,
    exe           TEXT    NOT NULL,
    argv          TEXT    NOT NULL,   -- JSON array of strings (already redacted by the collector)
    user          TEXT    NOT NULL,
    uid           INTEGER NOT NULL,
    start_time_ns INTEGER NOT NULL,
    cpu_percent   REAL    NOT NULL,
    rss_bytes     INTEGER NOT NULL,
    exe_sha256    BLOB    NOT NULL,
    last_ts_ns    INTEGER NOT NULL,
    store_seq     INTEGER NOT NULL,
    PRIMARY KEY (source, pid)
) WITHOUT ROWID;

-- Appliance state: small tables with their own API (amoskys.store.state), not in the event log.
CREATE TABLE users (
    name          TEXT    PRIMARY KEY,
    password_hash TEXT    NOT NULL,   -- an scrypt hash string, made by the caller
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_ns    INTEGER NOT NULL,
    updated_ns    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id_hash    BLOB    PRIMARY KEY,   -- a hash of the session token; the token itself is never stored
    user       TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    revoked_ns INTEGER
);
CREATE INDEX sessions_user ON sessions (user);

CREATE TABLE login_throttles (
    key             TEXT    PRIMARY KEY,   -- e.g. 'user:alice' or 'addr:192.0.2.7'
    failures        INTEGER NOT NULL,
    window_start_ns INTEGER NOT NULL,
    locked_until_ns INTEGER NOT NULL
);

CREATE TABLE identities (
    name        TEXT    PRIMARY KEY,
    role        TEXT    NOT NULL CHECK (role IN ('agent', 'relay')),
    public_key  BLOB    NOT NULL,   -- raw Ed25519 public key (32 bytes)
    cert_serial TEXT    NOT NULL,
    enrolled_ns INTEGER NOT NULL,
    revoked_ns  INTEGER
);

CREATE TABLE sink_cursors (
    name       TEXT    PRIMARY KEY,
    store_seq  INTEGER NOT NULL,   -- every row up to here is acked by the sink
    enabled    INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);

CREATE TABLE chain_anchors (
    sender TEXT    PRIMARY KEY,
    digest BLOB    NOT NULL,   -- digest of the sender's last accepted batch
    ts_ns  INTEGER NOT NULL
);
"""


_V2 = """
-- Where each event came from: '' for the appliance's own (in-process) events, else the enrolled
-- identity whose signed batch carried it (an agent, or the relay it was forwarded through). Set by
-- the bus, never by the publisher. Not part of the chain digest (that covers the envelope only).
ALTER TABLE events ADD COLUMN origin TEXT NOT NULL DEFAULT '';
-- Rows stored before origins were recorded: those of an enrolled identity's name came through the
-- bus. (A relay's rows for other sources cannot be told apart after the fact; they stay '').
UPDATE events SET origin = source WHERE source IN (SELECT name FROM identities);
"""


_V3 = """
-- Synthetic events: 1 when the identity whose signed batch carried the event is enrolled with the
-- loadgen role (`amoskys loadgen`). Set by the bus from the sender's role when it stores the event,
-- never by the publisher, so re-enrolling a name later changes nothing already stored. The
-- dashboard marks these events and leaves them out of its totals. Not part of the chain digest.
ALTER TABLE events ADD COLUMN synthetic INTEGER NOT NULL DEFAULT 0;
-- Only synthetic rows are indexed: counting them never scans the log.
CREATE INDEX events_synthetic ON events (store_seq) WHERE synthetic = 1;
-- The loadgen role (SQLite cannot change a CHECK constraint: the small table is rebuilt).
CREATE TABLE identities_v3 (
    name        TEXT    PRIMARY KEY,
    role        TEXT    NOT NULL CHECK (role IN ('agent', 'relay', 'loadgen')),
    public_key  BLOB    NOT NULL,
    cert_serial TEXT    NOT NULL,
    enrolled_ns INTEGER NOT NULL,
    revoked_ns  INTEGER
);
INSERT INTO identities_v3 (name, role, public_key, cert_serial, enrolled_ns, revoked_ns)
    SELECT name, role, public_key, cert_serial, enrolled_ns, revoked_ns FROM identities;
DROP TABLE identities;
ALTER TABLE identities_v3 RENAME TO identities;
"""


_V4 = """
-- Sessions and API tokens keep their kind: a value issued as a session cookie is refused as a bearer
-- token and the other way round (amoskys.web.auth).
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'session' CHECK (kind IN ('session', 'token'));
-- The session or token that issued a token (its id_hash): revoking one revokes what it issued. NULL
-- for logins and for tokens issued by `amoskys tokens issue` (or before this version).
ALTER TABLE sessions ADD COLUMN issued_by BLOB;
-- A token's name, given at creation ('' when none).
ALTER TABLE sessions ADD COLUMN label TEXT NOT NULL DEFAULT '';
-- A token's role cap (NULL: the user's role); the effective role is the lower of the two.
ALTER TABLE sessions ADD COLUMN role TEXT CHECK (role IN ('admin', 'viewer'));
-- Rows made before kinds were kept: API tokens were issued for 1 to 365 days, logins for at most
-- the default absolute timeout (12 hours) unless it was raised, so a longer lifetime marks a token.
-- A login session of a raised timeout is taken for a token: its cookie is refused (log in again).
UPDATE sessions SET kind = 'token' WHERE expires_ns - created_ns > 12 * 3600 * 1000000000;
CREATE INDEX sessions_issued_by ON sessions (issued_by) WHERE issued_by IS NOT NULL;
"""


_V5 = """
-- The read model (amoskys.store.views, amoskys.store.series): tables every page and API list reads,
-- maintained by the writer in the same transaction as the events. Row tables have one row per event
-- of their kind, keyed by its store_seq (= rowid: an index on (x) is one on (x, store_seq)), and are
-- deleted with it. 'synthetic' and 'origin' are the event's.
CREATE TABLE flows (
    store_seq    INTEGER PRIMARY KEY,
    source       TEXT    NOT NULL,
    origin       TEXT    NOT NULL,
    synthetic    INTEGER NOT NULL,
    ts_ns        INTEGER NOT NULL,
    first_ts_ns  INTEGER NOT NULL,
    last_ts_ns   INTEGER NOT NULL,
    protocol     INTEGER NOT NULL,
    ip_version   INTEGER NOT NULL,
    src_addr     TEXT    NOT NULL,
    src_port     INTEGER NOT NULL,
    dst_addr     TEXT    NOT NULL,
    dst_port     INTEGER NOT NULL,
    community_id TEXT    NOT NULL,
    fwd_bytes    INTEGER NOT NULL,   -- deltas since the previous record of the flow (sum = total)
    fwd_packets  INTEGER NOT NULL,
    rev_bytes    INTEGER NOT NULL,
    rev_packets  INTEGER NOT NULL,
    interface    TEXT    NOT NULL,
    vlan         INTEGER NOT NULL,
    final        INTEGER NOT NULL,   -- 0 on interim (active timeout) records
    end_reason   INTEGER NOT NULL    -- FlowEndReason number
);
CREATE INDEX flows_ts ON flows (ts_ns);
CREATE INDEX flows_src ON flows (src_addr, ts_ns);
CREATE INDEX flows_dst ON flows (dst_addr, ts_ns);
CREATE INDEX flows_dport ON flows (dst_port, ts_ns);
CREATE INDEX flows_community ON flows (community_id, ts_ns);

-- Process exec and exit events (snapshots only feed the live `processes` table).
CREATE TABLE process_history (
    store_seq     INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    origin        TEXT    NOT NULL,
    synthetic     INTEGER NOT NULL,
    ts_ns         INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('exec', 'exit')),
    pid           INTEGER NOT NULL,
    ppid          INTEGER NOT NULL,
    exe           TEXT    NOT NULL,
    comm          TEXT    NOT NULL,   -- base name of exe, else of argv[0]
    argv          TEXT    NOT NULL,   -- JSON array of strings, as stored (redacted by the collector)
    argv_redacted INTEGER NOT NULL,
    user          TEXT    NOT NULL,
    uid           INTEGER NOT NULL,
    start_time_ns INTEGER NOT NULL,
    exit_code     INTEGER,
    exit_signal   INTEGER,
    lifetime_ns   INTEGER NOT NULL,
    exe_sha256    BLOB    NOT NULL,
    container_id  TEXT    NOT NULL
);
CREATE INDEX process_history_ts ON process_history (ts_ns);
CREATE INDEX process_history_exe ON process_history (exe, ts_ns);
CREATE INDEX process_history_comm ON process_history (comm, ts_ns);
CREATE INDEX process_history_source ON process_history (source, ts_ns);

CREATE TABLE audit (
    store_seq   INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    origin      TEXT    NOT NULL,
    synthetic   INTEGER NOT NULL,
    ts_ns       INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    remote_addr TEXT    NOT NULL,
    success     INTEGER NOT NULL,
    detail      TEXT    NOT NULL
);
CREATE INDEX audit_ts ON audit (ts_ns);
CREATE INDEX audit_actor ON audit (actor, ts_ns);
CREATE INDEX audit_action ON audit (action, ts_ns);

CREATE TABLE alerts (
    store_seq         INTEGER PRIMARY KEY,
    source            TEXT    NOT NULL,
    origin            TEXT    NOT NULL,
    synthetic         INTEGER NOT NULL,
    ts_ns             INTEGER NOT NULL,
    rule              TEXT    NOT NULL,
    severity          INTEGER NOT NULL,   -- 0 unspecified, 1 info, 2 warning, 3 critical
    summary           TEXT    NOT NULL,
    attributes        TEXT    NOT NULL,   -- JSON object
    related_event_ids TEXT    NOT NULL    -- JSON array
);
CREATE INDEX alerts_ts ON alerts (ts_ns);
CREATE INDEX alerts_rule ON alerts (rule, ts_ns);
CREATE INDEX alerts_severity ON alerts (severity, ts_ns);

-- Time series (amoskys.store.series): step 60 (minute) and 900 (quarter-hour) points, both written by
-- the writer; each step is deleted by its own retention ([store] series_minute_hours, series_quarter_days).
CREATE TABLE series_events (
    step INTEGER NOT NULL, bucket_ns INTEGER NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    synthetic INTEGER NOT NULL, events INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (step, bucket_ns, source, kind, synthetic)
) WITHOUT ROWID;
CREATE TABLE series_flow_addr (   -- at most 256 addresses per (step, bucket, source); the rest: ''
    step INTEGER NOT NULL, bucket_ns INTEGER NOT NULL, source TEXT NOT NULL, address TEXT NOT NULL,
    flows INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_bytes INTEGER NOT NULL,
    tx_packets INTEGER NOT NULL, rx_packets INTEGER NOT NULL,
    PRIMARY KEY (step, bucket_ns, source, address)
) WITHOUT ROWID;
CREATE TABLE series_flow_iface (  -- at most 64 interfaces per (step, bucket, source); the rest: ''
    step INTEGER NOT NULL, bucket_ns INTEGER NOT NULL, source TEXT NOT NULL, interface TEXT NOT NULL,
    flows INTEGER NOT NULL, bytes INTEGER NOT NULL, packets INTEGER NOT NULL,
    PRIMARY KEY (step, bucket_ns, source, interface)
) WITHOUT ROWID;
-- How many named rows (address or interface != '') each capped bucket holds, kept by the triggers
-- below: the writer checks the cap against it instead of counting the rows.
CREATE TABLE series_names (
    step INTEGER NOT NULL, bucket_ns INTEGER NOT NULL, source TEXT NOT NULL, tbl TEXT NOT NULL,
    names INTEGER NOT NULL,
    PRIMARY KEY (step, bucket_ns, source, tbl)
) WITHOUT ROWID;
CREATE TRIGGER series_flow_addr_named AFTER INSERT ON series_flow_addr WHEN NEW.address != '' BEGIN
    INSERT INTO series_names (step, bucket_ns, source, tbl, names)
        VALUES (NEW.step, NEW.bucket_ns, NEW.source, 'series_flow_addr', 1)
        ON CONFLICT (step, bucket_ns, source, tbl) DO UPDATE SET names = names + 1;
END;
CREATE TRIGGER series_flow_iface_named AFTER INSERT ON series_flow_iface WHEN NEW.interface != '' BEGIN
    INSERT INTO series_names (step, bucket_ns, source, tbl, names)
        VALUES (NEW.step, NEW.bucket_ns, NEW.source, 'series_flow_iface', 1)
        ON CONFLICT (step, bucket_ns, source, tbl) DO UPDATE SET names = names + 1;
END;
CREATE TABLE series_process (
    step INTEGER NOT NULL, bucket_ns INTEGER NOT NULL, source TEXT NOT NULL,
    execs INTEGER NOT NULL, exits INTEGER NOT NULL,
    PRIMARY KEY (step, bucket_ns, source)
) WITHOUT ROWID;
CREATE TABLE series_host (
    step INTEGER NOT NULL, bucket_ns INTEGER NOT NULL, source TEXT NOT NULL,
    samples INTEGER NOT NULL, cpu_sum REAL NOT NULL, cpu_max REAL NOT NULL,
    mem_used_sum INTEGER NOT NULL, mem_total_max INTEGER NOT NULL, swap_used_sum INTEGER NOT NULL,
    load1_sum REAL NOT NULL, load1_max REAL NOT NULL,
    PRIMARY KEY (step, bucket_ns, source)
) WITHOUT ROWID;
CREATE TABLE series_snmp_if (
    step INTEGER NOT NULL, bucket_ns INTEGER NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    if_index INTEGER NOT NULL, samples INTEGER NOT NULL, in_bps_sum REAL NOT NULL,
    out_bps_sum REAL NOT NULL, in_bps_max REAL NOT NULL, out_bps_max REAL NOT NULL,
    PRIMARY KEY (step, bucket_ns, source, target, if_index)
) WITHOUT ROWID;

-- The backfill of a store that had events before this version: the events from next_seq to last_seq
-- are still to be read (amoskys.store.views.backfill, in chunks, at start). No row: nothing to do.
CREATE TABLE read_model_backfill (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL
);
INSERT INTO read_model_backfill (id, next_seq, last_seq)
    SELECT 1, MIN(store_seq), MAX(store_seq) FROM events HAVING COUNT(*) > 0;
"""


_V8 = """
-- The newest flows of real traffic, newest first, without stepping over loadgen's (top talkers: they
-- scanned back through every synthetic flow stored since the last real one). Only real flows pay for it.
CREATE INDEX flows_real ON flows (store_seq) WHERE synthetic = 0;
"""


_V10 = """
-- Detections (amoskys.detections). `alerts` becomes one row per ALERT: the first Alert event of an
-- alert opens its row (keyed by that event's store_seq); the alert's follow-up events (same rule, same
-- host, within [detections] alert_window_seconds; Alert.alert_id names the first event) and the
-- runtime's repeat counts update it; triage AuditEvents (action alert_triage) set its state. Alerts
-- without alert_id (built-in ones of earlier versions) keep one row per event. Rows of unresolved
-- alerts outlive retention.
ALTER TABLE alerts ADD COLUMN alert_id TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN rule_id TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN level TEXT NOT NULL DEFAULT '';   -- Sigma's word: informational .. critical
ALTER TABLE alerts ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';  -- JSON array
ALTER TABLE alerts ADD COLUMN host TEXT NOT NULL DEFAULT '';    -- the source whose events matched
ALTER TABLE alerts ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN first_seen_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN last_seen_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;  -- the newest Alert event of the alert
ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'new'
    CHECK (state IN ('new', 'acknowledged', 'resolved', 'false_positive'));
ALTER TABLE alerts ADD COLUMN state_by TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN state_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN state_note TEXT NOT NULL DEFAULT '';
UPDATE alerts SET
    alert_id = COALESCE((SELECT event_id FROM events WHERE events.store_seq = alerts.store_seq), ''),
    host = source, first_seen_ns = ts_ns, last_seen_ns = ts_ns, last_seq = store_seq,
    level = CASE severity WHEN 1 THEN 'informational' WHEN 2 THEN 'medium' WHEN 3 THEN 'critical' ELSE '' END;
-- The alert pages order and filter by last_seen_ns (below): the first version's indexes by event time,
-- rule and severity serve no read any more, and each cost every alert row three index updates.
DROP INDEX alerts_ts;
DROP INDEX alerts_rule;
DROP INDEX alerts_severity;
CREATE INDEX alerts_alert_id ON alerts (alert_id);
CREATE INDEX alerts_last_seen ON alerts (last_seen_ns);
CREATE INDEX alerts_state ON alerts (state, last_seen_ns);
CREATE INDEX alerts_rule_id ON alerts (rule_id, last_seen_ns);
CREATE INDEX alerts_host ON alerts (host, last_seen_ns);
CREATE INDEX alerts_level ON alerts (level, last_seen_ns);
-- The open alerts counted by level, synthetic ones apart (the Overview, the Alerts page): index only.
-- A query uses it when its WHERE has this very term (amoskys.store.queries.alerts).
CREATE INDEX alerts_open ON alerts (synthetic, level) WHERE state IN ('new', 'acknowledged');

-- Evidence events of unresolved alerts, copied here when retention (or the hard cap) deletes the
-- originals from `events`; deleted once no unresolved alert names them.
CREATE TABLE alert_evidence (
    source      TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    store_seq   INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    ts_ns       INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    envelope    BLOB    NOT NULL,
    PRIMARY KEY (source, event_id)
) WITHOUT ROWID;

-- Appliance state of the detections, written through the writer's ops and audited
-- (amoskys.detections.desk). Matches of rule_id on host ('' = every host) whose `field` equals `value`
-- raise no alert until expires_ns.
CREATE TABLE alert_suppressions (
    id          TEXT    PRIMARY KEY,
    rule_id     TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    field       TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ns  INTEGER NOT NULL,
    expires_ns  INTEGER NOT NULL,
    removed_by  TEXT    NOT NULL DEFAULT '',
    removed_ns  INTEGER,
    hits        INTEGER NOT NULL DEFAULT 0,
    last_hit_ns INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alert_suppressions_active ON alert_suppressions (expires_ns) WHERE removed_ns IS NULL;
-- Rules switched at runtime; a rule without a row is enabled.
CREATE TABLE detection_rules (
    rule_id    TEXT    PRIMARY KEY,
    enabled    INTEGER NOT NULL,
    changed_by TEXT    NOT NULL,
    changed_ns INTEGER NOT NULL
);
-- The detections' position in the log: every event up to store_seq was evaluated. Not a sink cursor:
-- retention does not wait for it (a stalled engine must not fill the disk; what it misses is counted).
CREATE TABLE detection_cursor (
    name       TEXT    PRIMARY KEY,
    store_seq  INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: `script` takes the database from `version - 1` to `version`."""

    version: int
    description: str
    script: str


_V6 = """
-- The outbox (amoskys.store.outbox, amoskys.forwarders). A sink's cursor covers the kinds it forwards:
-- NULL for every kind, else a JSON array of kind names; rows of other kinds count as acked by it.
ALTER TABLE sink_cursors ADD COLUMN kinds TEXT;
-- The batches a sink sealed (signed and chained) before sending them: enough to rebuild the same bytes
-- after a crash (its rows of `kinds` with store_seq in first_seq..last_seq, in store order). Deleted
-- once acked, but for the sink's newest, which keeps its chain's tip.
CREATE TABLE outbox_batches (
    sink        TEXT    NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    events      INTEGER NOT NULL,   -- rows in the batch
    kinds       TEXT,               -- the sink's kinds when it was sealed (NULL: every kind)
    prev_digest BLOB    NOT NULL,
    digest      BLOB    NOT NULL,
    sealed_ns   INTEGER NOT NULL,
    PRIMARY KEY (sink, first_seq)
) WITHOUT ROWID;
"""


_V7 = """
-- One-time enrolment tokens (amoskys.store.enrol_tokens): only a hash of the secret is kept. A token
-- buys one certificate for `name` with `role` before expires_ns; used_ns is set when it did.
CREATE TABLE enrol_tokens (
    id          TEXT    PRIMARY KEY,
    secret_hash BLOB    NOT NULL,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    created_ns  INTEGER NOT NULL,
    expires_ns  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    used_ns     INTEGER
) WITHOUT ROWID;
"""


_V9 = """
-- A sink's position in its receiver, written in the same statement batch as its cursor (NULL: the sink
-- keeps none). The NATS forwarder keeps a stream sequence at or below every message it published for
-- the rows after its cursor: after a restart it reads its messages after it to learn which of those rows
-- the stream already holds (amoskys.forwarders.nats).
ALTER TABLE sink_cursors ADD COLUMN remote_seq INTEGER;
"""

_V11 = """
-- Bridge forwarding tables (SnmpSample.fdb, the SNMP collector's fdb profile): which switch port each
-- MAC is behind. A sample with fdb_polled replaces its target's older rows; a derived view, maintained
-- by the writer in the same transaction as the sample.
CREATE TABLE snmp_fdb (
    mac       BLOB    NOT NULL,
    source    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    vlan      INTEGER NOT NULL,   -- dot1qFdbId; 0 from BRIDGE-MIB
    port      INTEGER NOT NULL,   -- dot1dBasePort
    if_index  INTEGER NOT NULL,   -- 0: unknown
    if_name   TEXT    NOT NULL,
    status    INTEGER NOT NULL,   -- 3 learned, 4 self, 5 mgmt ...
    ts_ns     INTEGER NOT NULL,
    store_seq INTEGER NOT NULL,
    PRIMARY KEY (mac, source, target, vlan)
) WITHOUT ROWID;
CREATE INDEX snmp_fdb_target ON snmp_fdb (source, target, ts_ns);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "event log, marks, derived views, appliance state", _V1),
    Migration(2, "events.origin: the identity a remote event came through", _V2),
    Migration(3, "events.synthetic (sent by a loadgen identity); the loadgen identity role", _V3),
    Migration(4, "sessions.kind, issued_by, label, role: sessions and API tokens told apart", _V4),
    Migration(5, "the read model: flows, process_history, audit, alerts, time series", _V5),
    Migration(6, "the outbox: sink cursors' kinds, sealed batches", _V6),
    Migration(7, "one-time enrolment tokens", _V7),
    Migration(8, "flows of real traffic by store_seq (top talkers without loadgen's)", _V8),
    Migration(9, "sink_cursors.remote_seq: a sink's position in its receiver, saved with its cursor", _V9),
    Migration(10, "detections: one alerts row per alert, kept evidence, suppressions, rules, cursor", _V10),
    Migration(11, "snmp_fdb: the switch port each MAC is behind (bridge forwarding tables)", _V11),
)

#: The schema version this build writes.
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's PRAGMA user_version."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: str) -> list[int]:
    """Bring the schema to SCHEMA_VERSION (each step in its own transaction); return the versions
    applied. `conn` must be in autocommit mode (isolation_level=None)."""
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"store {path}: schema version {current} is newer than this build supports "
            f"({SCHEMA_VERSION}); run a newer amoskys or move the file aside"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(migration.script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {migration.version:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    views.backfill(conn)  # the read model of events stored before version 5 (resumes after a crash)
    return applied


def statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    out, buf = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            statement = "\n".join(buf).strip()
            if sqlite3.complete_statement(statement):
                out.append(statement)
                buf = []
    rest = "\n".join(buf).strip()
    if rest:
        out.append(rest)
    return out


def ensure_meta(conn: sqlite3.Connection, *, now_ns: int, first_seq: int) -> None:
    """Insert the store_meta row of a new database (a no-op when it exists). `first_seq` is the
    store_seq the first row will get (above every number a previous database of this data dir used)."""
    conn.execute(
        "INSERT OR IGNORE INTO store_meta (id, store_id, created_ns, last_seq, last_digest, row_count) "
        "VALUES (1, ?, ?, ?, ?, 0)",
        (str(uuid.uuid4()), now_ns, first_seq - 1, GENESIS_DIGEST),
    )


def apply_connection_pragmas(conn: sqlite3.Connection, *, synchronous: str) -> None:
    """Per-connection settings for the writer: durability, foreign keys, waiting on locks."""
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
