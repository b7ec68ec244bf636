"""`amoskys backup` while the appliance runs and a publisher keeps writing, and `amoskys restore`:
the restored store passes its integrity check, holds every event up to the backup point (all of
them acked before the backup began among them), its chain verifies, and an appliance starts on it
with the same CA."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest

from amoskys.store.chain import verify_chain
from amoskys.store.schema import SCHEMA_VERSION

from support import ROOT, amoskys, require_root, start_appliance, wait_for

CONFIG = """\
[bus]
enrol_listen = "off"
[detections]
enabled = false
[collectors.heartbeat]
interval_seconds = 1.0
[collectors.host]
interval_seconds = 1.0
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[collectors.snmp]
enabled = false
"""


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def chain_ok(db: Path) -> bool:
    async def check() -> bool:
        async with aiosqlite.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return (await verify_chain(conn)).ok

    return asyncio.run(check())


@pytest.mark.e2e
def test_backup_while_writing_then_restore_round_trip(tmp_path: Path, appliance_factory) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "amoskys.toml"
    conf.write_text(CONFIG)
    app = appliance_factory("--config", str(conf))
    app.wait_ready(timeout=30)
    data = app.data_dir
    bundle = tmp_path / "lg"
    amoskys(
        "agents",
        "enroll",
        "lg",
        "--role",
        "loadgen",
        "--out",
        str(bundle),
        "--config",
        str(conf),
        "--data-dir",
        str(data),
    )
    acked = tmp_path / "acked.txt"
    loadgen = subprocess.Popen(
        [sys.executable, "-m", "amoskys", "loadgen", "--identity", str(bundle), "--events", "1000000",
         "--rate", "2000", "--batch", "50", "--acked-file", str(acked), "--quiet"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: len(lines(acked)) >= 2000, timeout=30, what="2000 events acked")
        before = set(lines(acked))
        out = tmp_path / "backup.tar.gz"
        made = amoskys("backup", "--config", str(conf), "--data-dir", str(data), "--out", str(out))
        during = set(lines(acked)) - before
        assert during, "the publisher was acked while the backup ran"
        assert "mode 0600" in made.stdout
        # the store went on: events after the backup point were committed meanwhile or after
        assert loadgen.poll() is None
    finally:
        loadgen.terminate()
        try:
            loadgen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            loadgen.kill()
            loadgen.wait(timeout=10)

    assert out.stat().st_mode & 0o777 == 0o600
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("amoskys-backup/manifest.json").read())  # type: ignore[union-attr]
    assert {
        "amoskys-backup/data/events.db",
        "amoskys-backup/data/pki/ca.key",
        "amoskys-backup/config/amoskys.toml",
    } <= names
    assert not any(n.endswith(("run.json", "control.sock", ".highwater", ".lock")) for n in names)
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["mode"] == "appliance"
    backup_point = manifest["store"]["last_seq"]

    # a restore never writes over a store
    refused = amoskys("restore", str(out), "--data-dir", str(data), check=False)
    assert refused.returncode == 2 and "is not empty" in refused.stderr

    restored = tmp_path / "restored"
    config_out = tmp_path / "restored.toml"
    done = amoskys("restore", str(out), "--data-dir", str(restored), "--config-out", str(config_out))
    assert f"up to store_seq {backup_point}" in done.stdout
    assert restored.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in restored.rglob("*") if p.is_file())
    assert config_out.read_text() == CONFIG
    db = restored / "events.db"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count, low, high = conn.execute(
            "SELECT count(*), min(store_seq), max(store_seq) FROM events"
        ).fetchone()
        kept = {r[0] for r in conn.execute("SELECT event_id FROM events WHERE source = 'lg'")}
    assert (count, low, high) == (backup_point, 1, backup_point), "every event up to the backup point"
    assert before <= kept, "every event acked before the backup began is in it"
    assert chain_ok(db)
    assert (restored / "pki" / "ca.crt").read_bytes() == (data / "pki" / "ca.crt").read_bytes()

    app.signal(signal.SIGTERM)
    assert app.wait_exit(30) == 0
    # an appliance starts on the restored data dir, with its CA and its events
    again = start_appliance(restored, tmp_path / "restored.log", "--config", str(config_out))
    try:
        again.wait_ready(timeout=30)
        opened = next(e for e in again.log_events() if e.get("event") == "store_opened")
        assert opened["rows"] == backup_point and opened["migrations"] == []
        assert not any(
            e.get("event") in ("store_wal_truncated", "store_db_missing") for e in again.log_events()
        )
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait_exit(30) == 0


def test_a_damaged_or_foreign_backup_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "pki").mkdir(mode=0o700)
    (data / "pki" / "ca.crt").write_text("a certificate\n")
    with closing(sqlite3.connect(data / "events.db")) as conn:
        conn.executescript(
            "CREATE TABLE store_meta (row_count INTEGER, last_seq INTEGER); INSERT INTO store_meta VALUES (0, 0);"
            f"PRAGMA user_version = {SCHEMA_VERSION};"
        )
    good = tmp_path / "good.tar"
    amoskys("backup", "--data-dir", str(data), "--out", str(good))
    again = amoskys("backup", "--data-dir", str(data), "--out", str(good), check=False)
    assert again.returncode == 2 and "never overwrites" in again.stderr

    # one byte of the certificate changed inside the tar: its checksum no longer matches
    raw = bytearray(good.read_bytes())
    at = raw.index(b"a certificate")
    raw[at] = ord("A")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(raw))
    refused = amoskys("restore", str(bad), "--data-dir", str(tmp_path / "r1"), check=False)
    assert refused.returncode == 2 and "pki/ca.crt does not match its checksum" in refused.stderr
    assert not (tmp_path / "r1").exists()

    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        tar.add(data / "pki" / "ca.crt", arcname="etc/passwd")
    refused = amoskys("restore", str(foreign), "--data-dir", str(tmp_path / "r2"), check=False)
    assert refused.returncode == 2 and "not an amoskys backup" in refused.stderr
    assert not (tmp_path / "r2").exists()


def test_backup_of_a_missing_data_dir_is_named_and_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    result = amoskys("backup", "--data-dir", str(typo), "--out", str(tmp_path / "b.tar"), check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(typo) in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.needs_root
def test_a_backup_by_root_leaves_the_stopped_stores_files_to_its_owner(tmp_path: Path) -> None:
    """A WAL store whose appliance is stopped has no -wal/-shm; reading it makes them, and root's
    would lock the appliance's user out of its own store."""
    require_root("chown to another user")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    db = data / "events.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(
            "CREATE TABLE store_meta (row_count INTEGER, last_seq INTEGER); INSERT INTO store_meta VALUES (0, 0);"
        )
    assert sorted(p.name for p in data.iterdir()) == ["events.db"]
    os.chown(data, 65534, 65534)
    os.chown(db, 65534, 65534)
    amoskys("backup", "--data-dir", str(data), "--out", str(tmp_path / "b.tar"))
    assert {(p.name, p.stat().st_uid) for p in data.iterdir()} <= {
        ("events.db", 65534),
        ("events.db-wal", 65534),
        ("events.db-shm", 65534),
    }
