"""`amoskys tokens list|revoke|issue`: dashboard API tokens. Revoking and issuing go through the
control service (amoskys.cli.actions)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from amoskys.cli import actions
from amoskys.cli.common import add_common, days, layout, minute, read_state, require_store

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers
    from amoskys.store.state import ApplianceState


def add_parser(sub: SubParsers) -> None:
    tokens = sub.add_parser("tokens", help="dashboard API tokens").add_subparsers(
        dest="tokens_command", required=True, metavar="ACTION"
    )
    p = tokens.add_parser("list", help="active API tokens (never their secrets)")
    p.add_argument("--user", metavar="NAME", help="only this user's tokens")
    add_common(p)
    p.set_defaults(func=cmd_tokens_list)
    p = tokens.add_parser(
        "revoke", help="revoke a token (by the id `tokens list` shows) and the tokens it issued"
    )
    p.add_argument("id", metavar="ID")
    add_common(p)
    p.set_defaults(func=cmd_tokens_revoke)
    p = tokens.add_parser("issue", help="issue a token for a user (printed once, on stdout)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--days", type=days, default=90, help="validity, 1..365 days (default 90)")
    p.add_argument("--label", default="", help="a name for the token")
    p.add_argument("--role", choices=["admin", "viewer"], help="at most the user's role (default: it)")
    add_common(p)
    p.set_defaults(func=cmd_tokens_issue)


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from amoskys.store.state import public_id

    config, where = layout(args)

    async def tokens(state: ApplianceState):  # type: ignore[no-untyped-def]
        return await state.list_tokens(args.user)

    rows = read_state(config, where, tokens)
    print(f"{'ID':12} {'USER':16} {'ROLE':7} {'CREATED':16} {'EXPIRES':16} {'ISSUED BY':12} LABEL")
    for t in rows:
        issuer = public_id(t.issued_by) if t.issued_by else "-"
        role = t.role or "(user)"
        print(
            f"{t.public_id:12} {t.user:16} {role:7} {minute(t.created_ns):16} {minute(t.expires_ns):16} "
            f"{issuer:12} {t.label}"
        )
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    config, where = layout(args)
    require_store(config, where)
    reply = actions.act(config, where, {"cmd": "tokens_revoke", "id": args.id})
    if reply.get("not_found"):
        print(
            f"amoskys: error: no active token with id {args.id!r} (see `amoskys tokens list`)",
            file=sys.stderr,
        )
        return 1
    code = actions.refused(reply)
    if code is not None:
        return code
    print(f"revoked token {args.id} ({int(reply.get('revoked', 1)) - 1} tokens it issued with it)")
    return 0


def cmd_tokens_issue(args: argparse.Namespace) -> int:
    """A token issued by the operator (no issuing session: it lives its full term, until revoked)."""
    config, where = layout(args)
    require_store(config, where)
    message = {
        "cmd": "tokens_issue",
        "user": args.name,
        "days": args.days,
        "label": args.label,
        "role": args.role,
    }
    reply = actions.act(config, where, message)
    code = actions.refused(reply)
    if code is not None:
        return code
    print(
        f"token {reply['id']} for {reply['user']!r} ({reply['role']}, {args.days} days); shown once:",
        file=sys.stderr,
    )
    print(reply["token"])
    return 0
