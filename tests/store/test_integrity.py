"""Start-time integrity: truncated WAL, corrupt files moved aside, migrations, full disks."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from amoskys.errors import StoreError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.store import Outcome, Record, Store, SubmitRefusedError
from amoskys.store.integrity import read_high_water, request_check, side_file
from amoskys.store.schema import SCHEMA_VERSION

from .helpers import flow_records, open_store, running, small_config
from support import eventually, require_root

WAL_HEADER, FRAME_HEADER, PAGE = 32, 24, 4096


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _moved_aside(directory: Path) -> list[Path]:
    return sorted(directory.glob("events.db.corrupt-*"))


def _rows(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT store_seq, event_id FROM events ORDER BY store_seq").fetchall()
    finally:
        conn.close()


async def test_flipped_byte_in_the_wal_is_detected_at_start_and_reported_with_the_range(
    tmp_path: Path,
) -> None:
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    crashed.mkdir()
    store = await open_store(live / "events.db")
    stamper = EnvelopeStamper("agent-1")
    async with running(store):
        for i in range(10):  # ten transactions, each its own WAL frames
            await store.submit(flow_records(stamper, 20, start=i * 20))
        side = side_file(live / "events.db")
        await eventually(
            lambda: (m := read_high_water(side)) is not None and m.store_seq == 200,
            within=5,
            what="the side file",
        )
        # what a power cut would leave behind: the database, its WAL, the side file (no -shm)
        for name in ("events.db", "events.db-wal", "events.db.highwater"):
            shutil.copyfile(live / name, crashed / name)
    wal = crashed / "events.db-wal"
    frames = (wal.stat().st_size - WAL_HEADER) // (FRAME_HEADER + PAGE)
    assert frames >= 10
    bad = frames // 2
    _flip_byte(wal, WAL_HEADER + bad * (FRAME_HEADER + PAGE) + FRAME_HEADER + 100)

    with capture_logs() as logs:
        store = await open_store(crashed / "events.db")
    async with running(store):
        (loss_row,) = await store.events(kind="loss")
        surviving = [r.store_seq for r in await store.events(kind="flow")]
        after = await store.submit(flow_records(stamper, 1, start=999))
        newest = (await store.events(after_seq=loss_row.store_seq))[-1]
        check = await store.verify_chain()
    loss = loss_row.parse().loss
    last_kept = max(surviving, default=0)
    assert last_kept < 200, "the flipped byte should have cost the frames after it"
    assert surviving == list(range(1, last_kept + 1))
    assert (loss.reason, loss.range_start, loss.range_end) == ("wal_truncated", last_kept + 1, 200)
    assert loss.count == 200 - last_kept
    assert loss_row.store_seq == 201  # numbering continues above the lost range: no seq is reused
    assert after == [Outcome.COMMITTED] and newest.store_seq == 202
    assert check.ok
    truncated = [e for e in logs if e["event"] == "store_wal_truncated"]
    assert truncated and truncated[0]["missing_from"] == last_kept + 1 and truncated[0]["missing_to"] == 200


async def test_garbage_database_is_moved_aside_and_a_fresh_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(EnvelopeStamper("a"), 30))
    path.write_bytes(os.urandom(64 * 1024))
    with capture_logs() as logs:
        store = await open_store(path)
    async with running(store):
        (loss_row,) = await store.events(kind="loss")
        assert await store.submit(flow_records(EnvelopeStamper("b"), 1)) == [Outcome.COMMITTED]
    aside = _moved_aside(tmp_path)
    assert len(aside) == 1 and aside[0].stat().st_size == 64 * 1024
    loss = loss_row.parse().loss
    assert (loss.reason, loss.range_start, loss.range_end, loss.count) == ("db_corrupt", 1, 30, 30)
    assert loss_row.store_seq == 31
    moved = [e for e in logs if e["event"] == "store_corrupt_moved_aside"]
    assert moved and moved[0]["moved_to"] == str(aside[0]) and moved[0]["log_level"] == "error"


async def test_damaged_pages_fail_the_quick_check_and_the_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(EnvelopeStamper("a"), 2000))
    _overwrite(path, PAGE * 3, os.urandom(PAGE * 20))  # keep the header page, ruin b-tree pages
    store = await open_store(path)
    try:
        (loss_row,) = await store.events(kind="loss")
    finally:
        await store.close()
    assert loss_row.parse().loss.reason == "db_corrupt"
    assert len(_moved_aside(tmp_path)) == 1


async def test_garbage_database_without_a_side_file_is_still_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"not a database" * 1000)
    store = await open_store(path)
    try:
        (loss_row,) = await store.events(kind="loss")
    finally:
        await store.close()
    loss = loss_row.parse().loss
    assert (loss.reason, loss.count, loss.range_end) == ("db_corrupt", 0, 0)


async def test_a_deleted_database_is_reported_from_the_side_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(EnvelopeStamper("a"), 12))
    path.unlink()
    store = await open_store(path)
    try:
        (loss_row,) = await store.events(kind="loss")
    finally:
        await store.close()
    loss = loss_row.parse().loss
    assert (loss.reason, loss.range_start, loss.range_end) == ("db_missing", 1, 12)


async def test_a_database_from_a_newer_build_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await (await open_store(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this build"):
        await open_store(path)
    assert path.exists() and not _moved_aside(tmp_path)


async def test_new_database_uses_incremental_auto_vacuum_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await (await open_store(path)).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def _fill_until_failure(store: Store, stamper: EnvelopeStamper) -> tuple[list[Record], list[Record]]:
    """Submit until a transaction fails; return (acked records, records whose future failed)."""
    acked: list[Record] = []
    failed: list[Record] = []
    n = 0
    while not failed:
        batch = flow_records(stamper, 200, start=n)
        n += 200
        try:
            outcomes = await store.submit(batch, local=True)
        except SubmitRefusedError:
            continue  # the writer is backing off after the failure
        except StoreError:
            failed.extend(batch)
            continue
        assert outcomes == [Outcome.COMMITTED] * len(batch)
        acked.extend(batch)
        assert n < 200_000, "the disk never filled"
    return acked, failed


async def _recover(store: Store, stamper: EnvelopeStamper) -> list[Record]:
    """Submit until a batch commits again (the writer backs off between attempts)."""
    n = 10_000_000
    while True:
        batch = flow_records(stamper, 10, start=n)
        n += 10
        try:
            outcomes = await store.submit(batch, local=True)
        except SubmitRefusedError as err:
            assert err.reason == "error"
            await asyncio.sleep(err.backoff_hint_ms / 1000)
            continue
        except StoreError:
            continue
        assert outcomes == [Outcome.COMMITTED] * 10
        return batch


async def test_full_database_gives_errors_no_false_acks_and_recovers_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    metrics = Metrics()
    store = await open_store(path, metrics=metrics)
    stamper = EnvelopeStamper("appliance")
    with capture_logs() as logs:
        async with running(store):
            await store.submit(flow_records(stamper, 100, start=-100))
            (pages,) = (await store._db.execute_fetchall("PRAGMA page_count"))[0]
            # max_page_count is per connection: cap the writer's at a little above what it holds
            await store._db.execute(f"PRAGMA max_page_count = {pages + 40}")
            acked, failed = await _fill_until_failure(store, stamper)
            with pytest.raises(SubmitRefusedError) as info:
                store.submit(flow_records(stamper, 1, start=-1000))
            assert info.value.reason == "error"
            await store._db.execute("PRAGMA max_page_count = 4294967294")  # space is back
            recovered = await _recover(store, stamper)
    stored = {event_id for _, event_id in _rows(path)}
    assert {r.event_id for r in acked + recovered} <= stored  # every ack is true
    assert not {r.event_id for r in failed} & stored  # and every failure stored nothing
    assert metrics.store_errors.labels("disk_full")._value.get() >= 1
    events = [e["event"] for e in logs]
    assert events.count("store_write_failed") == 1 and events.count("store_recovered") == 1


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False)


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return result.returncode == 0


@pytest.mark.needs_root
async def test_full_file_system_gives_errors_no_false_acks_and_recovers_without_restart(
    tmp_path: Path,
) -> None:
    require_root("mounts a small tmpfs to fill a real file system")
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "4m"):
        pytest.skip("needs root and tmpfs to fill a real file system")
    try:
        path = mnt / "events.db"
        store = await open_store(path)
        stamper = EnvelopeStamper("appliance")
        ballast = mnt / "ballast"
        async with running(store):
            await store.submit(flow_records(stamper, 100, start=-100))
            free = shutil.disk_usage(mnt).free
            ballast.write_bytes(b"\0" * (free - 256 * 1024))  # leave 256 KB
            acked, failed = await _fill_until_failure(store, stamper)
            ballast.unlink()
            recovered = await _recover(store, stamper)
        stored = {event_id for _, event_id in _rows(path)}
        assert {r.event_id for r in acked + recovered} <= stored
        assert not {r.event_id for r in failed} & stored
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
    finally:
        _umount(mnt)


async def test_damage_found_after_a_skipped_quick_check_is_moved_aside_not_a_crash_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    config = small_config(quick_check_max_mb=0)  # never quick-check: damage shows up later
    async with running(await open_store(path, config=config)) as store:
        await store.submit(flow_records(EnvelopeStamper("a"), 10))
    _overwrite(path, 100, os.urandom(PAGE - 100))  # the schema page, behind a valid header
    with capture_logs() as logs:
        store = await open_store(path, config=config)
    try:
        (loss_row,) = await store.events(kind="loss")
    finally:
        await store.close()
    assert loss_row.parse().loss.reason == "db_corrupt"
    assert len(_moved_aside(tmp_path)) == 1
    assert [e["quick_check"] for e in logs if e["event"] == "store_opened"] == ["skipped"]


async def test_a_check_requested_by_the_writer_runs_whatever_the_size(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    config = small_config(quick_check_max_mb=0)
    await (await open_store(path, config=config)).close()
    request_check(path)
    with capture_logs() as logs:
        await (await open_store(path, config=config)).close()
        await (await open_store(path, config=config)).close()
    assert [e["quick_check"] for e in logs if e["event"] == "store_opened"] == ["ok", "skipped"]
