"""`amoskys loadgen`: publish synthetic events of every kind to a bus, and measure."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from amoskys.cli.common import loop_factory, positive_int, positive_seconds
from amoskys.errors import ConfigError

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("loadgen", help="publish synthetic events of every kind to a bus, and measure")
    p.add_argument(
        "--identity",
        required=True,
        metavar="DIR",
        help="enrolment bundle of a loadgen identity (amoskys agents enroll NAME --role loadgen --out DIR)",
    )
    p.add_argument("--bus", metavar="HOST:PORT", help="bus address (default: the bundle's)")
    p.add_argument(
        "--events", type=positive_int, default=10_000, metavar="N", help="events to publish (10000)"
    )
    p.add_argument(
        "--batch", type=positive_int, default=100, metavar="B", help="events per signed batch (100)"
    )
    p.add_argument(
        "--rate", type=float, default=0.0, metavar="R", help="events/s to offer (0: as fast as acked)"
    )
    p.add_argument(
        "--window", type=positive_int, default=4, metavar="W", help="batches in flight at once (4)"
    )
    p.add_argument("--acked-file", metavar="F", help="append each OK-acked event_id to F")
    p.add_argument("--unary", action="store_true", help="one event per Publish call (needs --batch 1)")
    p.add_argument(
        "--server-name", metavar="NAME", help="TLS name to expect when dialing an address not in the SANs"
    )
    p.add_argument(
        "--connect-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up when the bus is not reached in time, saying why in one line (10)",
    )
    p.add_argument("--losses", action="store_true", help="also publish synthetic LossReports")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--quiet", action="store_true", help="no progress line on stderr (shown only on a terminal)"
    )
    p.set_defaults(func=cmd_loadgen)


def cmd_loadgen(args: argparse.Namespace) -> int:
    from amoskys import loadgen

    if args.unary and args.batch != 1:
        raise ConfigError("loadgen: --unary sends one event per call: use --batch 1", path="--batch")
    identity = loadgen.load_identity(Path(args.identity))
    bus = args.bus or identity.bus_address
    if not bus:
        raise ConfigError("loadgen: no --bus given and the bundle names no bus address", path="--bus")
    try:
        acked = open(args.acked_file, "a", encoding="ascii") if args.acked_file else None
    except OSError as err:
        raise ConfigError(
            f"loadgen: --acked-file {args.acked_file}: {err.strerror}", path="--acked-file"
        ) from err
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(
                loadgen.run(
                    identity,
                    bus,
                    events=args.events,
                    batch=args.batch,
                    rate=args.rate,
                    window=args.window,
                    acked_file=acked,
                    unary=args.unary,
                    server_name=args.server_name,
                    progress=sys.stderr if not args.quiet and sys.stderr.isatty() else None,
                    connect_timeout=args.connect_timeout,
                    bundle_dir=Path(args.identity),
                    losses=args.losses,
                )
            )
    finally:
        if acked is not None:
            acked.close()
    print(loadgen.format_summary(result, args.json))
    return 0
