"""`amoskys users add|list|remove|passwd`: dashboard users. Changes go through the control service
(amoskys.cli.actions); the password is read here, and checked before anything is asked of the store."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from amoskys.cli import actions
from amoskys.cli.common import add_common, layout, minute, read_state
from amoskys.errors import ConfigError

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers
    from amoskys.store.state import ApplianceState


def add_parser(sub: SubParsers) -> None:
    users = sub.add_parser("users", help="dashboard users").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    p = users.add_parser("add", help="add a dashboard user (password from a prompt, or stdin)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=["admin", "viewer"], default="viewer")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--replace", action="store_true", help="set a new password and role for an existing user")
    add_common(p)
    p.set_defaults(func=cmd_users_add)
    p = users.add_parser("list", help="dashboard users and their roles")
    add_common(p)
    p.set_defaults(func=cmd_users_list)
    p = users.add_parser("remove", help="remove a user and end their sessions")
    p.add_argument("name", metavar="NAME")
    add_common(p)
    p.set_defaults(func=cmd_users_remove)
    p = users.add_parser(
        "passwd", help="set a user's password (prompted twice, or stdin); their sessions and tokens end"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_common(p)
    p.set_defaults(func=cmd_users_passwd)


def read_new_password(args: argparse.Namespace) -> str:
    import getpass

    from amoskys.web.passwords import new_password_problem

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password (12 characters at least): ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("the two passwords differ", path="password")
    problem = new_password_problem(password)
    if problem:
        raise ConfigError(problem, path="password")
    return password


def _user_exists(name: str):  # type: ignore[no-untyped-def]
    async def exists(state: ApplianceState) -> bool:
        return await state.get_user(name) is not None

    return exists


def cmd_users_add(args: argparse.Namespace) -> int:
    config, where = layout(args)
    if not args.replace and read_state(config, where, _user_exists(args.name), create=True):
        from amoskys.store.errors import StateConflictError

        raise StateConflictError(
            f"user {args.name!r} already exists (--replace sets a new password and role)",
            kind="user",
            key=args.name,
        )
    password = read_new_password(args)
    message = {
        "cmd": "users_add",
        "name": args.name,
        "role": args.role,
        "password": password,
        "replace": bool(args.replace),
    }
    code = actions.refused(actions.act(config, where, message))
    if code is not None:
        return code
    print(f"user {args.name!r} ({args.role}) {'updated' if args.replace else 'added'}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    config, where = layout(args)

    async def users(state: ApplianceState):  # type: ignore[no-untyped-def]
        return await state.list_users()

    for u in read_state(config, where, users):
        print(f"{u.name:24} {u.role:7} created {minute(u.created_ns)}")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    config, where = layout(args)
    read_state(config, where, _user_exists(args.name))  # no store yet: an error naming it
    reply = actions.act(config, where, {"cmd": "users_remove", "name": args.name})
    code = actions.refused(reply)
    if code is not None:
        return code
    print(f"removed {args.name!r} and ended their sessions")
    return 0


def cmd_users_passwd(args: argparse.Namespace) -> int:
    """A new password; every session and API token of the user ends (the running appliance reads
    the store on each request, so they are refused at once)."""
    config, where = layout(args)
    if not read_state(config, where, _user_exists(args.name)):
        print(f"amoskys: error: no user named {args.name!r}", file=sys.stderr)
        return 1
    password = read_new_password(args)
    reply = actions.act(config, where, {"cmd": "users_passwd", "name": args.name, "password": password})
    code = actions.refused(reply)
    if code is not None:
        return code
    print(f"password of {args.name!r} changed; {reply.get('sessions_ended', 0)} sessions and tokens ended")
    return 0
