"""`amoskys agents token NAME`: a one-time enrolment token, printed as the one command line to run on
the endpoint (`amoskys agent enroll ...`, with the bus address, the enrolment port and the CA's SHA-256
fingerprint). Issued through the control service (the running appliance, else the stopped data dir);
the appliance keeps only the token's hash."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from amoskys.cli import actions
from amoskys.cli.common import add_common, credentials
from amoskys.errors import ConfigError, PkiError

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(agents: SubParsers) -> None:
    p = agents.add_parser(
        "token",
        help="a one-time enrolment token: the agent makes its own keys (amoskys agent enroll)",
        description="Print the command that enrols agent NAME from its own host: it makes its keys there, "
        "sends a certificate request with this token and receives its certificate. The token works once, "
        "until it expires, and only for NAME; keep it secret until it is used.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--ttl", default="1h", type=_ttl, help="lifetime: 30m, 1h (default), 2d ... at most 7d")
    p.add_argument(
        "--role",
        choices=["agent", "relay", "loadgen"],
        default="agent",
        help="relay: may forward others' events; loadgen: its events are marked synthetic",
    )
    p.add_argument(
        "--bus-address",
        metavar="HOST:PORT",
        help="address the agent dials (default as for `agents enroll`); its host must be in the bus "
        "server certificate",
    )
    add_common(p)
    p.set_defaults(func=cmd_agents_token)


def _ttl(text: str) -> int:
    from amoskys.pki.tokens import parse_ttl

    try:
        return parse_ttl(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_agents_token(args: argparse.Namespace) -> int:
    from amoskys.config import enrol_listen_address, parse_listen
    from amoskys.pki.enrolment import bundle_bus_address
    from amoskys.pki.issuance import appliance_identity
    from amoskys.pki.names import same_name
    from amoskys.pki.tokens import ca_fingerprint

    config, where, creds = credentials(args)
    own = appliance_identity(creds, config.bus.trust_domain)
    if same_name(args.name, own):
        raise PkiError(f"cannot enrol {args.name!r}: that is this appliance's own name ({own!r})")
    address = bundle_bus_address(
        args.bus_address, config.bus, run_json=where.run_json, server_cert=creds.server_cert
    )
    alive, running = _running_enrol_port(where.run_json)
    if alive and running is None:
        raise ConfigError(
            "agents token: the running appliance has no enrolment port (its log says why: "
            "bus_enrolment_port_unavailable); set [bus] enrol_listen and restart it",
            path="$.bus.enrol_listen",
        )
    if running is not None:
        enrol_port = running
    else:
        configured = enrol_listen_address(config.bus)
        if configured is None:
            raise ConfigError(
                'agents token: enrolment is off ([bus] enrol_listen = "off")', path="$.bus.enrol_listen"
            )
        enrol_port = configured[1]
        if not enrol_port:
            raise ConfigError(
                "agents token: the enrolment port is chosen when the appliance starts (port 0); start it "
                "first, or set [bus] enrol_listen",
                path="$.bus.enrol_listen",
            )
    fingerprint = ca_fingerprint(creds.ca_cert.read_bytes())
    message = {
        "cmd": "enrol_token",
        "name": args.name,
        "role": args.role,
        "ttl_seconds": args.ttl,
        "ca_fingerprint": fingerprint.hex(),
    }
    reply = actions.act(config, where, message)
    code = actions.refused(reply)
    if code is not None:
        return code
    expires = datetime.fromtimestamp(int(reply["expires_ns"]) / 1e9, UTC)
    port_flag = "" if enrol_port == parse_listen(address)[1] + 1 else f" --enrol-port {enrol_port}"
    print(
        f"amoskys agent enroll --bus {address}{port_flag} --ca-fingerprint {fingerprint.hex()} "
        f"--token {reply['token']}"
    )
    print(
        f"one-time enrolment token for {args.name!r} (role {args.role}), valid until "
        f"{expires:%Y-%m-%d %H:%M:%S} UTC: run the line above on the agent's host; keep it secret until then",
        file=sys.stderr,
    )
    return 0


def _running_enrol_port(run_json: Path) -> tuple[bool, int | None]:
    """Whether the appliance that wrote run.json still runs, and the enrolment port it names."""
    try:
        info = json.loads(run_json.read_text())
        pid, enrol = info["pid"], info.get("enrol")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False, None
    if not (isinstance(pid, int) and pid > 0):
        return False, None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass
    port = enrol.get("port") if isinstance(enrol, dict) else None
    return True, port if isinstance(port, int) and port > 0 else None
