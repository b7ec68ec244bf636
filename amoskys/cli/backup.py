"""`amoskys backup --out FILE` and `amoskys restore FILE --data-dir DIR`: a data dir into one file and back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from amoskys.cli.common import add_common

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "backup",
        help="back up the store (online, also while running), pki/ and the config into one 0600 tar file",
        description="Write a tar file (gzip-compressed when FILE ends in .gz or .tgz), mode 0600, holding a "
        "consistent copy of the event store made with SQLite's online backup (the appliance may keep "
        "running and writing), the data dir's pki/ (the CA and its private key), its other secrets, and "
        "the --config file. Keep it off the box, encrypted: it holds every private key of the appliance.",
    )
    add_common(p)
    p.add_argument("--out", metavar="FILE", required=True, help="the backup file to write (must not exist)")
    p.add_argument("--agent", action="store_true", help="the agent on this host: its default data dir")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore",
        help="restore a backup file into a new data dir",
        description="Check every file of FILE against its manifest, refuse a store newer than this build, "
        "and unpack it into DIR, which must not exist or be empty (a restore never overwrites a store). "
        "Then start `amoskys run --data-dir DIR`: migrations run at start as after an upgrade.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--data-dir", metavar="DIR", required=True, help="where to restore (new or empty)")
    p.add_argument("--config-out", metavar="FILE", help="also write the backed-up config file here")
    p.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    from amoskys.backup.archive import BackupError, write_backup
    from amoskys.cli.common import layout

    _, where = layout(args)
    out = Path(args.out).expanduser().absolute()
    try:
        written = write_backup(
            where.root,
            out,
            config=Path(args.config).absolute() if args.config else None,
            mode="agent" if args.agent else "appliance",
        )
    except OSError as err:
        raise BackupError(f"{err.filename or out}: {err.strerror or err}", path=str(out)) from err
    snap = written.snapshot
    print(
        f"{written.path}: {snap.rows} events up to store_seq {snap.last_seq} (schema {snap.schema_version}), "
        f"{written.files} files, {written.bytes} bytes, mode 0600"
    )
    if not args.config:
        print("note: no --config given: the backup holds no config file")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from amoskys.backup.archive import BackupError, restore

    data_dir = Path(args.data_dir).expanduser().absolute()
    source = Path(args.file).expanduser().absolute()
    try:
        done = restore(
            source,
            data_dir,
            config_out=Path(args.config_out).expanduser().absolute() if args.config_out else None,
        )
    except OSError as err:
        raise BackupError(f"{err.filename or source}: {err.strerror or err}", path=str(source)) from err
    snap, manifest = done.snapshot, done.manifest
    print(
        f"{data_dir}: restored {snap.rows} events up to store_seq {snap.last_seq} (schema {snap.schema_version}) "
        f"from a backup of {manifest['hostname']}:{manifest['data_dir']} by amoskys {manifest['amoskys_version']}"
    )
    if done.config is not None:
        print(f"config: {done.config}")
    elif manifest.get("config"):
        print(f"the backup holds a config ({manifest['config']}): --config-out FILE writes it")
    print(
        f"start it with: amoskys run --data-dir {data_dir}"
        + (" --config FILE" if manifest.get("config") else "")
    )
    return 0
