"""A consistent copy of a live store, with SQLite's online backup API.

The copy is made in one step (``pages=-1``): one read transaction over the whole database, so it is
the store exactly as of one commit, and the appliance's writer goes on committing meanwhile (WAL mode:
a reader never blocks the writer). Copying in several steps would restart from the beginning after
every commit of another process, and never finish under load. The price of one step: the store's WAL
cannot be checkpointed past the copy's snapshot until it ends, so it grows by what is written during
the copy (returned to the file system at the next checkpoint).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from amoskys.errors import StoreError

#: How long the copy waits for a lock (a checkpoint in progress) before it gives up.
BUSY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Snapshot:
    """What a copy holds: its schema version, its rows and the last store_seq (the backup point)."""

    schema_version: int
    rows: int
    last_seq: int


def copy_store(source: Path, dest: Path) -> Snapshot:
    """Copy the store at `source` into the new file `dest` (blocking: the caller's thread) and check
    the copy (PRAGMA integrity_check); raise StoreError when either cannot be done."""
    if not source.is_file():
        raise StoreError(f"no event store at {source} (has the appliance run with this --data-dir?)")
    # a store in WAL mode whose appliance is stopped has no -wal/-shm: reading it makes them
    existed = {tail: _sidecar(source, tail).exists() for tail in _SIDECARS}
    try:
        # read-only: a backup never changes the store it copies
        with (
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)) as src,
            closing(sqlite3.connect(dest)) as dst,
        ):
            src.backup(dst, pages=-1)
    except sqlite3.Error as err:
        raise StoreError(f"store {source}: cannot copy it: {err}") from err
    finally:
        _give_back(source, [tail for tail, was in existed.items() if not was])
    return check(dest)


_SIDECARS = ("-wal", "-shm")


def _sidecar(db: Path, tail: str) -> Path:
    return db.with_name(db.name + tail)


def _give_back(db: Path, made: list[str]) -> None:
    """Hand the -wal/-shm files this copy made to the store's owner: made by root (a backup run with
    sudo), they would keep the appliance's own user from opening its store."""
    st = db.stat()
    for tail in made:
        path = _sidecar(db, tail)
        try:
            if path.stat().st_uid != st.st_uid or path.stat().st_gid != st.st_gid:
                os.chown(path, st.st_uid, st.st_gid)
        except FileNotFoundError:
            continue  # SQLite removed it again, or never made it
        except PermissionError as err:
            raise StoreError(
                f"{path}: made by this backup, cannot be given to uid {st.st_uid}: {err}"
            ) from err


def check(db: Path) -> Snapshot:
    """The integrity of the store file `db` (StoreError unless "ok") and what it holds."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if verdict != ["ok"]:
                raise StoreError(f"store copy {db}: integrity check failed: {'; '.join(verdict[:5])}")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            rows, last_seq = conn.execute("SELECT row_count, last_seq FROM store_meta").fetchone()
    except sqlite3.Error as err:
        raise StoreError(f"store copy {db}: unreadable: {err}") from err
    return Snapshot(schema_version=version, rows=int(rows), last_seq=int(last_seq))
