"""`amoskys agents enroll|list|revoke`: remote agents. Recording an enrolment and revoking go through
the control service (amoskys.cli.actions)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from amoskys.cli import actions, agents_token
from amoskys.cli.common import add_common, credentials, layout, read_state, require_store

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers
    from amoskys.store.state import ApplianceState


def add_parser(sub: SubParsers) -> None:
    agents = sub.add_parser("agents", help="enrol, list and revoke remote agents").add_subparsers(
        dest="agents_command", required=True, metavar="ACTION"
    )
    p = agents.add_parser("enroll", help="issue a client certificate and signing key for an agent")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--role",
        choices=["agent", "relay", "loadgen"],
        default="agent",
        help="relay: may forward others' events; loadgen: for `amoskys loadgen`, its events are marked synthetic",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the bundle (must not exist)")
    p.add_argument(
        "--bus-address",
        metavar="HOST:PORT",
        help="address the agent dials (default: [bus] advertise_address, else the running appliance's "
        "bus, else [bus] listen when not a wildcard); its host must be in the bus server certificate",
    )
    add_common(p)
    p.set_defaults(func=cmd_agents_enroll)
    agents_token.add_parser(agents)
    p = agents.add_parser("list", help="enrolled agents, their keys, certificate expiry and revocation")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_agents_list)
    p = agents.add_parser(
        "revoke", help="revoke an agent; returns once the running appliance refuses it and ended its calls"
    )
    p.add_argument("name", metavar="NAME")
    add_common(p)
    p.set_defaults(func=cmd_agents_revoke)


def cmd_agents_enroll(args: argparse.Namespace) -> int:
    from amoskys.pki import enrolment

    config, where, creds = credentials(args)

    def record(bundle: enrolment.EnrolmentBundle) -> None:
        message = {
            "cmd": "enrolled",
            "name": bundle.name,
            "role": bundle.role,
            "public_key": bundle.public_key_raw.hex(),
            "cert_serial": str(bundle.cert_serial),
        }
        reply = actions.act(config, where, message)
        if not reply.get("ok"):
            raise actions.RefusedError(reply)

    bundle = enrolment.enroll(
        creds,
        config.bus,
        pki_dir=where.pki,
        run_json=where.run_json,
        name=args.name,
        role=args.role,
        out_dir=Path(args.out),
        record=record,
        bus_address=args.bus_address,
    )
    print(
        f"enrolled {bundle.name!r} (role {bundle.role}, key {bundle.key_id}, certificate valid until "
        f"{bundle.not_after:%Y-%m-%d}); bundle in {args.out} — copy it to the agent, keep it secret"
    )
    return 0


def cmd_agents_list(args: argparse.Namespace) -> int:
    from amoskys.pki.enrolment import agent_cert_path
    from amoskys.pki.identities import key_id_of_raw
    from amoskys.pki.issuance import cert_not_after

    config, where = layout(args)

    async def identities(state: ApplianceState):  # type: ignore[no-untyped-def]
        return await state.list_identities()

    rows = []
    for ident in read_state(config, where, identities):
        cert = agent_cert_path(where.pki, ident.name)
        expires = cert_not_after(cert).isoformat() if cert.exists() else ""
        rows.append(
            {
                "name": ident.name,
                "role": ident.role,
                "key_id": key_id_of_raw(ident.public_key),
                "enrolled": datetime.fromtimestamp(ident.enrolled_ns / 1e9, UTC).isoformat(),
                "revoked": datetime.fromtimestamp(ident.revoked_ns / 1e9, UTC).isoformat()
                if ident.revoked_ns
                else "",
                "cert_expires": expires,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no agents enrolled (amoskys agents enroll NAME --out DIR)")
    else:
        print(f"{'NAME':24} {'ROLE':7} {'KEY':16} {'CERT EXPIRES':26} REVOKED")
        for r in rows:
            print(
                f"{r['name']:24} {r['role']:7} {r['key_id']:16} {r['cert_expires'][:19]:26} {r['revoked'][:19] or '-'}"
            )
    return 0


def cmd_agents_revoke(args: argparse.Namespace) -> int:
    """Revoke through the control service: a running appliance records it and returns only once the
    bus refuses the agent and has ended the agent's calls in progress; on a stopped data dir it is
    recorded, and the appliance refuses the agent from its next start. Exit 1: it was revoked already."""
    from amoskys.errors import ControlError

    config, where = layout(args)
    name = args.name
    require_store(config, where)
    try:
        reply = actions.act(config, where, {"cmd": "revoke", "name": name})
    except ControlError as err:
        print(
            f"amoskys: error: the running appliance did not confirm revoking {name!r} ({err}); "
            "run this command again to confirm",
            file=sys.stderr,
        )
        return 2
    code = actions.refused(reply)
    if code is not None:
        return code
    newly = bool(reply.get("newly_revoked"))
    done = "revoked" if newly else "already revoked"
    if not reply.get("running"):
        print(
            f"{done} {name!r}; no appliance is running with data dir {where.root}: "
            "it refuses the agent from its next start"
        )
    else:
        print(
            f"{done} {name!r}: the running appliance confirmed it refuses the agent "
            f"(ended {reply.get('calls_ended') or 0} of its calls in progress)"
        )
    return 0 if newly else 1
