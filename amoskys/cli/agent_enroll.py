"""`amoskys agent enroll --token T --bus HOST:PORT`: enrol this host with a one-time token from
`amoskys agents token` (amoskys.pki.enrol_client). Its keys are made here and never leave it; the
appliance's CA is pinned by fingerprint before anything is sent."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    """`enroll` under the `agent` command (registered before this)."""
    agent = sub.choices["agent"]
    actions = agent.add_subparsers(dest="agent_command", metavar="ACTION")
    p = actions.add_parser(
        "enroll",
        help="enrol this host with a one-time token (amoskys agents token NAME on the appliance)",
        description="Make this host's TLS and Ed25519 keys, send a certificate request with the token and "
        "write the identity bundle `amoskys agent --identity DIR` runs with. The private keys never "
        "leave this host.",
    )
    p.add_argument("--token", required=True, metavar="TOKEN", help="the token `amoskys agents token` printed")
    p.add_argument("--bus", required=True, metavar="HOST:PORT", help="the appliance's bus address")
    p.add_argument(
        "--enrol-port",
        type=int,
        metavar="PORT",
        help="the appliance's enrolment port (default: the bus port + 1)",
    )
    p.add_argument(
        "--ca-fingerprint",
        metavar="SHA256",
        help="the appliance CA's SHA-256 fingerprint (also in the token; both must agree)",
    )
    p.add_argument(
        "--identity",
        metavar="DIR",
        help="where to write the bundle (must not hold one; default: identity/ in the agent's data dir)",
    )
    p.add_argument("--name", metavar="NAME", help="refuse unless the token was issued for NAME")
    p.set_defaults(func=cmd_agent_enroll, own_logging=False)


def cmd_agent_enroll(args: argparse.Namespace) -> int:
    from amoskys.agent import IDENTITY_DIR
    from amoskys.config import parse_listen
    from amoskys.errors import PkiError
    from amoskys.paths import resolve_data_dir
    from amoskys.pki.enrol_client import enrol

    if args.identity:
        out = Path(args.identity).expanduser().absolute()
    else:
        out = resolve_data_dir(None, "", os.environ, mode="agent")[0] / IDENTITY_DIR
    try:
        bus_port = parse_listen(args.bus)[1]
    except ValueError as err:
        raise PkiError(f"--bus: {err}") from None
    done = asyncio.run(
        enrol(
            args.token,
            bus_address=args.bus,
            enrol_port=args.enrol_port or bus_port + 1,
            out_dir=out,
            ca_fingerprint=args.ca_fingerprint,
            name=args.name,
        )
    )
    print(
        f"enrolled as {done.name!r} (role {done.role}, key {done.key_id}, certificate valid until "
        f"{done.not_after:%Y-%m-%d}); identity bundle in {done.dir} — run `amoskys agent --identity {done.dir}`"
    )
    return 0
