"""The backup file: a tar (gzip-compressed when its name ends in .gz or .tgz), mode 0600, holding

    amoskys-backup/manifest.json   what it holds: version, schema, rows, backup point, SHA-256 of each file
    amoskys-backup/data/events.db  the store, copied online (amoskys.backup.snapshot)
    amoskys-backup/data/...        the data dir's other files: pki/ (the CA and its key), web.secret,
                                   an agent's identity/ — not run.json, the control socket, the lock,
                                   the high-water side file (it describes the live store, not the copy)
    amoskys-backup/config/NAME     the config file given with --config

Restoring checks every file against the manifest, refuses a store newer than this build, and writes
only into a data dir that does not exist yet (or is empty): it never overwrites a store.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from amoskys import __version__
from amoskys.backup.snapshot import Snapshot, check, copy_store
from amoskys.errors import AmoskysError, DataDirError
from amoskys.store.schema import SCHEMA_VERSION

TOP = "amoskys-backup"
MANIFEST = f"{TOP}/manifest.json"
FORMAT = 1
#: data dir entries a backup leaves out: the store's own files (copied online instead), and what
#: belongs to a running process
_SKIPPED = ("run.json", "control.sock", ".write-test")
_CHUNK = 1024 * 1024


class BackupError(AmoskysError):
    """A backup cannot be written, or a backup file cannot be restored (damaged, wrong kind, or its
    target is not empty). `path` names the file at fault."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Written:
    """What `write_backup` put in the file."""

    path: Path
    snapshot: Snapshot
    files: int
    bytes: int


def _gzip(path: Path) -> bool:
    return path.name.endswith((".gz", ".tgz"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def data_files(root: Path) -> list[Path]:
    """The data dir's files a backup keeps (relative paths), the store excepted."""
    kept = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0].startswith("events.db") or rel.name in _SKIPPED:
            continue
        if path.is_file() and not path.is_symlink():
            kept.append(rel)
    return kept


def write_backup(data_dir: Path, out: Path, *, config: Path | None, mode: str) -> Written:
    """Write the backup of `data_dir` (and `config`) to the new file `out` (0600, written under a
    temporary name beside it, then renamed)."""
    if out.exists():
        raise BackupError(
            f"{out} exists: a backup never overwrites a file (choose another --out)", path=str(out)
        )
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent}: no such directory", path=str(out))
    with tempfile.TemporaryDirectory(prefix=".amoskys-backup-", dir=out.parent) as tmp:
        copy = Path(tmp) / "events.db"
        snapshot = copy_store(data_dir / "events.db", copy)
        members: list[tuple[str, Path]] = [(f"{TOP}/data/events.db", copy)]
        members += [(f"{TOP}/data/{rel.as_posix()}", data_dir / rel) for rel in data_files(data_dir)]
        if config is not None:
            members.append((f"{TOP}/config/{config.name}", config))
        manifest = {
            "format": FORMAT,
            "amoskys_version": __version__,
            "schema_version": snapshot.schema_version,
            "created_ns": time.time_ns(),
            "hostname": socket.gethostname(),
            "mode": mode,
            "data_dir": str(data_dir),
            "store": {"rows": snapshot.rows, "last_seq": snapshot.last_seq},
            "config": f"config/{config.name}" if config is not None else None,
            "files": {name.removeprefix(f"{TOP}/"): _sha256(path) for name, path in members},
        }
        partial = Path(tmp) / "backup.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            packed = (
                tarfile.open(fileobj=raw, mode="w:gz") if _gzip(out) else tarfile.open(fileobj=raw, mode="w")
            )
            with packed as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
                for name, path in members:
                    _add_file(tar, name, path)
            raw.flush()
            os.fsync(raw.fileno())
        size = partial.stat().st_size
        try:
            os.link(partial, out)  # never replaces a file that appeared meanwhile
        except FileExistsError as err:
            raise BackupError(f"{out} exists: a backup never overwrites a file", path=str(out)) from err
        fsync_dir(out.parent)
    return Written(out, snapshot, len(members), size)


def fsync_dir(path: Path) -> None:
    """Make a rename or link in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tar.gettarinfo(str(path), arcname=name)
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    with path.open("rb") as f:
        tar.addfile(info, f)


@dataclass(frozen=True)
class Restored:
    """What `restore` wrote into the data dir."""

    data_dir: Path
    manifest: dict[str, Any]
    snapshot: Snapshot
    config: Path | None


def restore(backup: Path, data_dir: Path, *, config_out: Path | None = None) -> Restored:
    """Unpack `backup` into the new (or empty) `data_dir` — dirs 0700, files 0600 — after checking
    every file against the manifest and the store's integrity; `config_out` receives the config."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise DataDirError(
            f"{data_dir} is not empty: a restore never overwrites a store (move it aside, or choose a new "
            "--data-dir)",
            path=str(data_dir),
        )
    if config_out is not None and config_out.exists():
        raise BackupError(f"{config_out} exists: choose another --config-out", path=str(config_out))
    try:
        tar = tarfile.open(backup, mode="r:*")
    except (OSError, tarfile.TarError) as err:
        raise BackupError(f"{backup}: not a backup file: {err}", path=str(backup)) from err
    with tar, tempfile.TemporaryDirectory(prefix=".amoskys-restore-", dir=_existing_parent(data_dir)) as tmp:
        manifest = _manifest(tar, backup)
        staged = Path(tmp) / "staged"
        files: dict[str, str] = manifest["files"]
        _extract(tar, staged, set(files), backup)
        for name, digest in files.items():
            if _sha256(staged / name) != digest:
                raise BackupError(
                    f"{backup}: {name} does not match its checksum (damaged file)", path=str(backup)
                )
        if manifest["schema_version"] > SCHEMA_VERSION:
            raise BackupError(
                f"{backup}: its store has schema version {manifest['schema_version']}, newer than this build "
                f"supports ({SCHEMA_VERSION}); restore it with amoskys {manifest['amoskys_version']} or newer",
                path=str(backup),
            )
        snapshot = check(staged / "data" / "events.db")
        for path in (staged / "data").rglob("*"):
            path.chmod(0o700 if path.is_dir() else 0o600)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked above)
        (staged / "data").chmod(0o700)
        os.replace(staged / "data", data_dir)
        fsync_dir(data_dir.parent)
        config = None
        if config_out is not None and manifest.get("config"):
            shutil.copyfile(staged / manifest["config"], config_out)
            config = config_out
    return Restored(data_dir, manifest, snapshot, config)


def _existing_parent(path: Path) -> Path:
    """The nearest existing directory at or above `path`'s parent (the staging area lives there, on
    the same file system as the data dir, so the final move is a rename)."""
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _manifest(tar: tarfile.TarFile, backup: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        raw = tar.extractfile(member)
        manifest: dict[str, Any] = json.loads(raw.read() if raw is not None else b"")
    except (KeyError, ValueError, tarfile.TarError) as err:
        raise BackupError(
            f"{backup}: not an amoskys backup (no readable {MANIFEST})", path=str(backup)
        ) from err
    if manifest.get("format") != FORMAT or "data/events.db" not in manifest.get("files", {}):
        raise BackupError(f"{backup}: unknown backup format {manifest.get('format')!r}", path=str(backup))
    return manifest


def _extract(tar: tarfile.TarFile, into: Path, names: set[str], backup: Path) -> None:
    """Extract exactly the manifest's files: regular files under the top folder, no links, no paths
    leaving it."""
    found = set()
    for member in tar.getmembers():
        if member.name == MANIFEST:
            continue
        rel = PurePosixPath(member.name)
        inside = rel.parts[:1] == (TOP,) and ".." not in rel.parts and not rel.is_absolute()
        name = str(PurePosixPath(*rel.parts[1:])) if inside else ""
        if not (inside and member.isfile() and name in names):
            raise BackupError(f"{backup}: unexpected member {member.name!r}", path=str(backup))
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        source = tar.extractfile(member)
        if source is None:
            raise BackupError(f"{backup}: unreadable member {member.name!r}", path=str(backup))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "wb") as f, source:
            shutil.copyfileobj(source, f, _CHUNK)
        found.add(name)
    if found != names:
        raise BackupError(f"{backup}: missing {', '.join(sorted(names - found))}", path=str(backup))
