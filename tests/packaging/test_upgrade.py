"""Upgrading is "replace the program, restart": every kept release's store (tests/fixtures/stores/,
written by that release's own `amoskys run`, see record.py there) is opened by this build's
`amoskys run`, migrated at start, and read back whole; the chain goes on across the upgrade. A store
newer than this build is refused with a message and left untouched."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from amoskys.store.chain import verify_chain
from amoskys.store.schema import SCHEMA_VERSION

from support import ROOT, amoskys, start_appliance, wait_for

STORES = ROOT / "tests" / "fixtures" / "stores"
RELEASES = sorted(p for p in STORES.glob("v*") if (p / "events.db").is_file())
QUIET = """\
[bus]
enrol_listen = "off"
[detections]
enabled = false
[collectors.heartbeat]
interval_seconds = 1.0
[collectors.host]
enabled = false
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[collectors.snmp]
enabled = false
"""


def test_a_store_is_kept_for_the_previous_release() -> None:
    assert [p.name for p in RELEASES][:1] == ["v0.1.0"]
    for release in RELEASES:
        assert (release / "events.db").stat().st_size < 1024 * 1024, "keep the fixture small"
        assert (release / "expected.json").is_file() and (release / "README.md").is_file()


def schema(db: Path) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def exported(data: Path) -> list[dict[str, Any]]:
    out = amoskys("events", "export", "--data-dir", str(data), "--limit", "100000").stdout
    return [json.loads(line) for line in out.splitlines() if line]


def chain(db: Path) -> Any:
    async def check() -> Any:
        async with aiosqlite.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return await verify_chain(conn)

    return asyncio.run(check())


@pytest.mark.e2e
@pytest.mark.parametrize("release", RELEASES, ids=[p.name for p in RELEASES])
def test_this_build_upgrades_a_release_store_in_place(
    release: Path, tmp_path: Path, appliance_factory
) -> None:  # type: ignore[no-untyped-def]
    expected = json.loads((release / "expected.json").read_text())
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shutil.copyfile(release / "events.db", data / "events.db")
    assert schema(data / "events.db") == expected["schema_version"] < SCHEMA_VERSION
    conf = tmp_path / "amoskys.toml"
    conf.write_text(QUIET)

    app = appliance_factory("--config", str(conf), data_dir=data)
    app.wait_ready(timeout=30)
    opened = next(e for e in app.log_events() if e.get("event") == "store_opened")
    assert opened["migrations"] == list(range(expected["schema_version"] + 1, SCHEMA_VERSION + 1))
    assert schema(data / "events.db") == SCHEMA_VERSION

    # every event the release stored reads back, by kind, with its ids
    rows = exported(data)
    old = [r for r in rows if r["store_seq"] <= expected["last"]["store_seq"]]
    assert len(old) == expected["rows"]
    by_kind: dict[str, int] = {}
    for r in old:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
    assert by_kind == expected["rows_by_kind"]
    assert (old[0]["source"], old[0]["event_id"]) == (
        expected["first"]["source"],
        expected["first"]["event_id"],
    )
    assert (old[-1]["source"], old[-1]["event_id"]) == (
        expected["last"]["source"],
        expected["last"]["event_id"],
    )
    users = amoskys("users", "list", "--data-dir", str(data)).stdout
    assert all(name in users for name in expected["users"])

    # the upgraded appliance goes on writing: new rows chain onto the release's tip
    wait_for(lambda: len(exported(data)) > expected["rows"], timeout=20, what="a new event after the upgrade")
    app.signal(signal.SIGTERM)
    assert app.wait_exit(30) == 0
    check = chain(data / "events.db")
    assert check.ok and check.first_seq == 1 and check.last_seq > expected["last"]["store_seq"]


@pytest.mark.e2e
def test_a_store_newer_than_this_build_is_refused_and_left_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    db = data / "events.db"
    shutil.copyfile(RELEASES[-1] / "events.db", db)
    with closing(sqlite3.connect(db)) as conn:  # as a newer amoskys leaves it: WAL mode, one version up
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    digest = hashlib.sha256(db.read_bytes()).hexdigest()

    app = start_appliance(data, tmp_path / "run.log", "--config", str(_quiet(tmp_path)))
    code = app.wait_exit(30)
    log = app.log()
    assert code == 2, log
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this build supports ({SCHEMA_VERSION})" in log
    assert "run a newer amoskys" in log
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    # refused, not taken for a corrupt file: nothing was moved aside or started afresh
    assert sorted(p.name for p in data.iterdir() if p.name.startswith("events.db")) == [
        "events.db",
        "events.db.lock",
    ]


def _quiet(tmp_path: Path) -> Path:
    conf = tmp_path / "amoskys.toml"
    conf.write_text(QUIET)
    return conf
