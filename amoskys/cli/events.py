"""`amoskys events export`: stored events as JSON Lines or ECS documents (also while the appliance runs)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from amoskys.cli.common import add_common, data_dir, load_config, positive_int
from amoskys.errors import ConfigError, DataDirError

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    events = sub.add_parser("events", help="read the event store").add_subparsers(
        dest="events_command", required=True, metavar="ACTION"
    )
    p = events.add_parser("export", help="write stored events as JSON Lines (also while the appliance runs)")
    add_common(p)
    p.add_argument(
        "--kind",
        help="only this body kind (process, host, flow, snmp, device, loss, alert, audit, heartbeat)",
    )
    p.add_argument("--source", help="only events of this source")
    p.add_argument("--since", metavar="ISO8601", help="only events observed at or after this time")
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N events")
    p.add_argument(
        "--format",
        choices=["jsonl", "ecs"],
        default="jsonl",
        help="jsonl: every event, fields as in amoskys/store/README.md; ecs: flows, processes, devices "
        "and alerts as Elastic Common Schema 8.11 documents (other kinds are skipped and counted)",
    )
    p.set_defaults(func=cmd_events_export)


def cmd_events_export(args: argparse.Namespace) -> int:
    from amoskys.errors import StoreError
    from amoskys.paths import Layout
    from amoskys.store.export import KINDS, export_events

    if args.kind is not None and args.kind not in KINDS:
        raise ConfigError(
            f"--kind: unknown kind {args.kind!r}; known kinds: {', '.join(KINDS)}",
            path="--kind",
            value=args.kind,
        )
    root, _ = data_dir(args, load_config(args))
    db = Layout(root).db
    try:
        present = db.exists()
    except OSError as err:  # an unreadable data dir
        raise StoreError(f"store {db}: cannot read: {err.strerror}") from err
    if not present:
        raise DataDirError(
            f"no event store at {db} (has the appliance run with this --data-dir?)", path=str(db)
        )
    since_ns = parse_since(args.since) if args.since else None
    try:
        summary = asyncio.run(
            export_events(
                db,
                sys.stdout,
                kind=args.kind,
                source=args.source,
                since_ns=since_ns,
                limit=args.limit,
                format=args.format,
            )
        )
    except OSError as err:
        raise StoreError(f"store {db}: cannot read: {err.strerror or err}") from err
    skipped = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.skipped.items()))
    note = f" (skipped, no ECS mapping: {skipped})" if skipped else ""
    print(f"exported {summary.written} events{note}", file=sys.stderr)
    return 0


def parse_since(text: str) -> int:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since: expected an ISO 8601 time like 2026-11-27T12:00:00Z, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000_000)
