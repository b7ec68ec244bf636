"""Detections end to end: real processes started on this box, seen by a real `amoskys run` child's process
collector (the netlink proc connector), raise the alerts of tests/detections/rules_e2e/ with the rules'
ids — and benign ones raise none; what was stored while no rules ran is caught up once after a restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from support import RunningAppliance, http_get, require_root, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]

RULES = Path(__file__).resolve().parent.parent / "detections" / "rules_e2e"
DOWNLOAD = "a32036e6-08c2-497c-bc95-6137253699ec"
BASE64 = "de548bb1-f274-41ca-9a83-5cd96cc1352d"
CHATTR = "805df36a-dab9-4962-9a47-c64bf230160b"
MARKED_CWD = "9e4e1c40-eadf-4c55-8717-442516dacb2b"


def config(tmp_path: Path, *, rules: bool = True) -> Path:
    path = tmp_path / ("rules.toml" if rules else "no-rules.toml")
    sigma = f'["{RULES}"]' if rules else "[]"
    path.write_text(
        f"""
[detections]
sigma_paths = {sigma}
reload_interval_seconds = 0.5
[collectors.process]
mode = "netlink"
snapshot_interval_seconds = 3600.0
[collectors.host]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
"""
    )
    return path


def run(argv: list[str], cwd: Path | None = None) -> None:
    subprocess.run(
        argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False
    )


def metric(app: RunningAppliance, line_start: str) -> float | None:
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def query(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def exec_ids(db: Path, comm: str, marker: str) -> list[str]:
    """The event ids of the stored execs of `comm` whose argv holds `marker`."""
    return [
        str(r[0])
        for r in query(
            db,
            "SELECT e.event_id FROM process_history p JOIN events e ON e.store_seq = p.store_seq "
            "WHERE p.kind = 'exec' AND p.comm = ? AND instr(p.argv, ?) > 0",
            (comm, marker),
        )
    ]


def seq_of(db: Path, event_id: str) -> int:
    return int(query(db, "SELECT store_seq FROM events WHERE event_id = ?", (event_id,))[0][0])  # type: ignore[call-overload]


def evaluated_past(db: Path, seq: int) -> bool:
    """Whether the detections' saved position is at or past `seq`."""
    got = query(db, "SELECT store_seq FROM detection_cursor WHERE name = 'detections'")
    return bool(got) and int(got[0][0]) >= seq  # type: ignore[call-overload]


def evidence(db: Path) -> dict[str, tuple[str, set[str]]]:
    """event id of each evidence event → (rule_id, ...) of the alerts naming it."""
    out: dict[str, tuple[str, set[str]]] = {}
    for rule_id, ids in query(db, "SELECT rule_id, related_event_ids FROM alerts"):
        for event_id in json.loads(str(ids)):
            out.setdefault(event_id, (str(rule_id), set()))[1].add(str(rule_id))
    return out


def malicious(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Start the processes the rules are about; rule id → (comm, argv marker) of the exec that matches.
    Each lives long enough (tens of ms) for the collector to read its /proc entry: the download reads
    a FIFO its shell writes a moment later, base64 waits for its input, chattr walks a tree."""
    drop = tmp_path / "drop"
    drop.mkdir(parents=True)
    fifo = drop / "fifo"
    os.mkfifo(fifo)
    marked = tmp_path / "amoskys-marked-cwd"
    marked.mkdir()
    tree = tmp_path / "locked"
    tree.mkdir()
    for i in range(3000):
        (tree / str(i)).touch()
    run(["sh", "-c", f"(sleep 0.1; echo payload > {fifo}) & curl -s -o {drop}/payload file://{fifo}; wait"])
    run(["sh", "-c", f"(sleep 0.1; echo ZWNobyBoaQo=) | base64 -d | sh # {drop}"])
    run(["chattr", "-R", "-i", str(tree)])
    run(["sleep", "0.05"], cwd=marked)
    return {
        DOWNLOAD: ("curl", str(drop)),
        BASE64: ("base64", '["base64","-d"]'),
        CHATTR: ("chattr", str(tree)),
        MARKED_CWD: ("sleep", '["sleep","0.05"]'),
    }


def benign(tmp_path: Path) -> list[tuple[str, str]]:
    """Processes close to the rules that must not match; (comm, argv marker) of each."""
    quiet = tmp_path / "quiet"
    quiet.mkdir(parents=True)
    fifo = quiet / "fifo"
    os.mkfifo(fifo)
    # into /tmp, but not started by a shell
    writer = subprocess.Popen(["sh", "-c", f"sleep 0.1; echo x > {fifo}"])
    run(["curl", "-s", "-o", f"{quiet}/direct", f"file://{fifo}"])
    writer.wait(timeout=10)
    run(["sh", "-c", f"(sleep 0.1; echo aGkK) | base64 -d -i > {quiet}/decoded"])  # decoded, not run
    tree = quiet / "tree"
    tree.mkdir()
    for i in range(3000):
        (tree / str(i)).touch()
    run(["chattr", "-R", "-V", "+d", str(tree)])  # not -i
    run(["sleep", "0.06"], cwd=quiet)  # an unmarked working directory
    return [
        ("curl", f"{quiet}/direct"),
        ("base64", '["base64","-d","-i"]'),
        ("chattr", str(tree)),
        ("sleep", '["sleep","0.06"]'),
    ]


def test_real_processes_raise_the_expected_alerts_and_benign_ones_none(
    appliance_factory, tmp_path: Path
) -> None:
    require_root("the process collector's proc connector needs root (CAP_NET_ADMIN)")
    app = appliance_factory("--config", str(config(tmp_path)))
    app.wait_ready(timeout=30)
    assert metric(app, 'amoskys_detections_rules{status="loaded"}') == 4
    expected = malicious(tmp_path / "m")
    quiet = benign(tmp_path / "b")
    db = app.data_dir / "events.db"

    def raised() -> dict[str, str] | None:
        found = evidence(db)
        got = {}
        for rule_id, (comm, marker) in expected.items():
            ids = exec_ids(db, comm, marker)
            hits = [i for i in ids if i in found and rule_id in found[i][1]]
            if not hits:
                return None
            got[rule_id] = hits[0]
        return got

    wait_for(raised, timeout=20, what="the four alerts, each naming its exec as evidence")
    # every benign exec was stored and evaluated, and none is evidence of any alert
    wait_for(lambda: all(exec_ids(db, c, m) for c, m in quiet), timeout=20, what="the benign execs")
    last = max(seq_of(db, i) for c, m in quiet for i in exec_ids(db, c, m))
    wait_for(lambda: evaluated_past(db, last), timeout=20, what="the detections' saved position past them")
    found = evidence(db)
    for comm, marker in quiet:
        wrongly = [i for i in exec_ids(db, comm, marker) if i in found]
        assert not wrongly, (comm, marker, found)
    assert (metric(app, "amoskys_detections_lag_events") or 0) < 10_000
    rows = query(db, "SELECT rule_id, title, level, host, state FROM alerts WHERE rule_id = ?", (BASE64,))
    assert rows and rows[0][1:] == ("Base64 Decoded Into A Shell", "high", app.info["name"], "new")
    app.signal(signal.SIGTERM)
    assert app.wait_exit(timeout=10) == 0


def test_what_was_stored_while_no_rules_ran_is_caught_up_once_after_a_restart(
    appliance_factory, tmp_path: Path
) -> None:
    require_root("the process collector's proc connector needs root (CAP_NET_ADMIN)")
    data = tmp_path / "data"
    first = appliance_factory("--config", str(config(tmp_path)), data_dir=data)
    first.wait_ready(timeout=30)  # rules loaded: the position is saved at the tip
    first.signal(signal.SIGTERM)
    assert first.wait_exit(timeout=10) == 0
    # the same appliance without rules: the execs are stored and not evaluated
    idle = appliance_factory("--config", str(config(tmp_path, rules=False)), data_dir=data)
    idle.wait_ready(timeout=30)
    drop = tmp_path / "m" / "drop"
    drop.parent.mkdir()
    drop.mkdir()
    fifo = drop / "fifo"
    os.mkfifo(fifo)
    run(["sh", "-c", f"(sleep 0.1; echo payload > {fifo}) & curl -s -o {drop}/payload file://{fifo}; wait"])
    db = data / "events.db"
    wait_for(lambda: exec_ids(db, "curl", str(drop)), timeout=20, what="the curl exec to be stored")
    idle.signal(signal.SIGTERM)
    assert idle.wait_exit(timeout=10) == 0
    [curl] = exec_ids(db, "curl", str(drop))
    assert curl not in evidence(db)

    def alert_events() -> list[tuple[object, ...]]:
        """The Sigma rules' alerts (a built-in detector, `amoskys.*`, may raise others meanwhile): rows,
        matches and the newest Alert event of each, which a second raise would move."""
        return query(
            db,
            "SELECT alert_id, count, last_seq FROM alerts WHERE rule_id NOT LIKE 'amoskys.%' ORDER BY store_seq",
        )

    again = appliance_factory("--config", str(config(tmp_path)), data_dir=data)
    again.wait_ready(timeout=30)
    wait_for(lambda: curl in evidence(db), timeout=20, what="the missed exec's alert")
    wait_for(lambda: evaluated_past(db, seq_of(db, curl)), timeout=20, what="the catch-up")
    assert (metric(again, 'amoskys_detections_events_evaluated_total{path="catchup"}') or 0) >= 2
    raised = alert_events()
    again.signal(signal.SIGTERM)
    assert again.wait_exit(timeout=10) == 0
    last = appliance_factory("--config", str(config(tmp_path)), data_dir=data)
    last.wait_ready(timeout=30)
    tip = int(query(db, "SELECT MAX(store_seq) FROM events")[0][0])  # type: ignore[call-overload]
    wait_for(lambda: evaluated_past(db, tip), timeout=20, what="the last start's pass")
    last.signal(signal.SIGTERM)
    assert last.wait_exit(timeout=10) == 0
    assert alert_events() == raised  # nothing raised twice
    [(count,)] = query(
        db, "SELECT count FROM alerts WHERE rule_id = ? AND instr(related_event_ids, ?)", (DOWNLOAD, curl)
    )
    assert count == 1
