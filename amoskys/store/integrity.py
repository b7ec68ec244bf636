"""Start-time integrity: quick check, corrupt files moved aside, migrations, truncated-WAL detection.

`prepare()` runs once, in a worker thread, before the writer opens its connections. It never leaves a
crash loop behind: a database SQLite calls corrupt (or not a database at all) is renamed with a
timestamp and a fresh one is created; what was lost is returned as `Loss` records, which the store
writes into the new log as LossReport events.

The high-water side file (`events.db.highwater`) holds the last committed store_seq. SQLite drops
every WAL frame after one with a bad checksum without any error, so a side file ahead of the database
means committed rows vanished; the range is reported. The file is fsynced at most once a second and
at shutdown: rows committed in the last second before a crash are outside what it can vouch for.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from amoskys.errors import StoreError
from amoskys.store import schema

log = structlog.get_logger(__name__)

#: SQLite result codes that mean "this file is damaged or not a database" (never "busy" or "I/O").
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass(frozen=True, slots=True)
class Loss:
    """Rows the store knows it lost, to be reported as a LossReport (store_seq range, inclusive)."""

    reason: str  # wal_truncated, db_corrupt, db_missing
    count: int
    range_start: int
    range_end: int


@dataclass(frozen=True, slots=True)
class HighWater:
    """The content of the side file."""

    store_id: str
    store_seq: int
    rows: int


@dataclass(slots=True)
class Prepared:
    """What `prepare()` found and did."""

    store_id: str = ""
    created: bool = False  # a new database file was created
    moved_aside: Path | None = None
    quick_check: str = "skipped"  # ok, skipped, or the first problem found
    migrations: list[int] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)


def side_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".highwater")


def read_high_water(path: Path) -> HighWater | None:
    """The side file's content, or None when it is missing or unreadable (logged: it only ever
    weakens loss detection, it never stops the store)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("store_highwater_unreadable", path=str(path), error=err.strerror)
        return None
    try:
        body, _, crc = raw.decode("ascii").strip().rpartition(" ")
        if int(crc, 16) != zlib.crc32(body.encode("ascii")):
            raise ValueError("checksum mismatch")
        data = json.loads(body)
        return HighWater(str(data["store_id"]), int(data["store_seq"]), int(data["rows"]))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        log.warning("store_highwater_unreadable", path=str(path), error=str(err))
        return None


def write_high_water(path: Path, mark: HighWater) -> None:
    """Replace the side file atomically and durably (write, fsync, rename, fsync the directory)."""
    body = json.dumps({"store_id": mark.store_id, "store_seq": mark.store_seq, "rows": mark.rows})
    data = f"{body} {zlib.crc32(body.encode('ascii')):08x}\n".encode("ascii")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _is_corrupt(err: sqlite3.Error) -> bool:
    return getattr(err, "sqlite_errorcode", None) in _CORRUPT_CODES


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _companions(db_path: Path) -> list[Path]:
    return [db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _move_aside(db_path: Path, now_ns: int) -> Path:
    stamp = datetime.datetime.fromtimestamp(now_ns / 1e9, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = db_path.with_name(f"{db_path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(db_path, target)
        for companion in _companions(db_path):
            if companion.exists():
                os.replace(companion, target.with_name(target.name + companion.name[len(db_path.name) :]))
    except OSError as err:
        raise StoreError(f"store {db_path}: corrupt, and cannot be moved aside: {err.strerror}") from err
    return target


def _check_existing(db_path: Path, quick_check_max_bytes: int) -> str:
    """'ok', 'skipped' (too large to check at start), or why the file is unusable.

    Raises StoreError for problems that moving the file aside would not fix (permissions, locks).
    """
    size = _size(db_path) + _size(db_path.with_name(db_path.name + "-wal"))
    try:
        conn = sqlite3.connect(db_path, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"store {db_path}: cannot open: {err}") from err
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA user_version").fetchone()  # reads the header: NOTADB shows here
        if size >= quick_check_max_bytes:
            return "skipped"
        rows = conn.execute("PRAGMA quick_check(10)").fetchall()
        return "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows)
    except sqlite3.Error as err:
        if _is_corrupt(err):
            return f"{err} ({err.sqlite_errorname})"
        raise StoreError(f"store {db_path}: cannot read: {err}") from err
    finally:
        conn.close()


class _CorruptError(StoreError):
    """SQLite called the file damaged while it was being opened or migrated (internal)."""


def check_marker(db_path: Path) -> Path:
    """A file whose presence makes the next start run the quick check whatever the size."""
    return db_path.with_name(db_path.name + ".check")


def request_check(db_path: Path) -> None:
    """Ask the next start to quick-check the database (the writer saw SQLITE_CORRUPT)."""
    try:
        check_marker(db_path).touch(mode=0o600)
    except OSError as err:
        log.warning("store_check_request_failed", path=str(db_path), error=err.strerror)


def prepare(db_path: Path, *, quick_check_max_bytes: int, now_ns: int) -> Prepared:
    """Check, repair and migrate the database file before the store opens it (blocking: run it in
    a thread). Returns what it found; raises StoreError only for what a fresh file cannot fix."""
    result = Prepared()
    mark = read_high_water(side_file(db_path))
    marker = check_marker(db_path)
    if db_path.exists():
        limit = quick_check_max_bytes
        if marker.exists():
            limit = 1 << 62  # asked for by a writer that met corruption: check whatever the size
        result.quick_check = _check_existing(db_path, limit)
        if result.quick_check not in ("ok", "skipped"):
            _set_aside(result, db_path, now_ns, result.quick_check)
    try:
        _open_and_migrate(db_path, result, mark, now_ns)
    except _CorruptError as err:
        # damage the quick check did not look for (the file was too large to check): never a crash
        # loop, so set it aside now and start fresh
        _set_aside(result, db_path, now_ns, str(err))
        _open_and_migrate(db_path, result, mark, now_ns)
    marker.unlink(missing_ok=True)
    return result


def _set_aside(result: Prepared, db_path: Path, now_ns: int, problem: str) -> None:
    result.moved_aside = _move_aside(db_path, now_ns)
    log.error(
        "store_corrupt_moved_aside", path=str(db_path), moved_to=str(result.moved_aside), problem=problem
    )


def _make_private(db_path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644 less the umask, and it
    gives the -wal and -shm the database's mode), and take group/other bits off the store's files
    an older version left behind."""
    tails = ("", "-wal", "-shm", "-journal", ".lock", ".highwater")
    try:
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for f in (db_path.with_name(db_path.name + tail) for tail in tails):
            try:
                mode = f.stat().st_mode & 0o777
            except FileNotFoundError:
                continue
            if mode & 0o077:
                f.chmod(mode & 0o700)
    except OSError as err:
        raise StoreError(f"store {db_path}: cannot make its files private (0600): {err.strerror}") from err


def _open_and_migrate(db_path: Path, result: Prepared, mark: HighWater | None, now_ns: int) -> None:
    _make_private(db_path)
    try:
        conn = sqlite3.connect(db_path, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"store {db_path}: cannot open: {err}") from err
    result.losses.clear()
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        result.created = conn.execute("PRAGMA page_count").fetchone()[0] == 0  # a new (or empty) file
        if result.created:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect before the first table
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"store {db_path}: cannot switch to WAL journal mode (got {mode!r})")
        result.migrations = schema.migrate(conn, str(db_path))
        first_seq = mark.store_seq + 1 if mark is not None and result.created else 1
        schema.ensure_meta(conn, now_ns=now_ns, first_seq=first_seq)
        store_id, last_seq = conn.execute("SELECT store_id, last_seq FROM store_meta WHERE id = 1").fetchone()
        result.store_id = store_id
        _detect_losses(result, mark, last_seq, db_path)
        if result.losses and not result.created:
            # never hand out a store_seq twice: continue above the lost range
            top = max(loss.range_end for loss in result.losses)
            conn.execute("UPDATE store_meta SET last_seq = ? WHERE id = 1 AND last_seq < ?", (top, top))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start each run with an empty WAL
    except sqlite3.Error as err:
        if _is_corrupt(err) and not result.created:
            raise _CorruptError(f"{err} ({err.sqlite_errorname})") from err
        raise StoreError(f"store {db_path}: cannot prepare: {err}") from err
    finally:
        conn.close()


def _detect_losses(result: Prepared, mark: HighWater | None, last_seq: int, db_path: Path) -> None:
    """Compare the side file with the database and record what went missing."""
    if result.moved_aside is not None:
        # the old file is kept aside; its rows are lost to this store (the count is as of the
        # last side-file write, 0 when there was none)
        top = mark.store_seq if mark is not None else 0
        rows = mark.rows if mark is not None else 0
        result.losses.append(
            Loss(reason="db_corrupt", count=rows, range_start=1 if top else 0, range_end=top)
        )
    elif mark is None:
        return
    elif result.created and mark.store_seq > 0:
        result.losses.append(
            Loss(reason="db_missing", count=mark.rows, range_start=1, range_end=mark.store_seq)
        )
        log.warning("store_db_missing", path=str(db_path), last_seq=mark.store_seq, rows=mark.rows)
    elif mark.store_id == result.store_id and mark.store_seq > last_seq:
        result.losses.append(
            Loss(
                reason="wal_truncated",
                count=mark.store_seq - last_seq,
                range_start=last_seq + 1,
                range_end=mark.store_seq,
            )
        )
        log.warning(
            "store_wal_truncated", path=str(db_path), missing_from=last_seq + 1, missing_to=mark.store_seq
        )
    elif mark.store_id != result.store_id:
        log.warning(
            "store_highwater_mismatch",
            path=str(db_path),
            side_store_id=mark.store_id,
            store_id=result.store_id,
        )
