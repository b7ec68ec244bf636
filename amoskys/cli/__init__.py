"""The `amoskys` command: the parser assembled from one module per command group, and `main`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from amoskys import __version__
from amoskys.cli import (
    agent,
    agent_enroll,
    agents,
    backup,
    certs,
    doctor,
    events,
    loadgen,
    rules,
    run,
    status,
    tokens,
    users,
)
from amoskys.errors import AmoskysError

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


#: The command groups, in the order `amoskys --help` lists them (collectors' commands follow agents).
_GROUPS = (run, agent, agent_enroll, loadgen, status, doctor, events, agents)  # agent_enroll: `agent enroll`
_AFTER_COLLECTORS = (users, tokens, certs, rules, backup)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amoskys", description="AMOSKYS edge security sensor")
    parser.add_argument("--version", action="version", version=f"amoskys {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.add_parser(sub)
    _add_collector_commands(sub)
    for group in _AFTER_COLLECTORS:
        group.add_parser(sub)
    return parser


def _add_collector_commands(sub: SubParsers) -> None:
    """The sub-commands collectors bring in their folder's cli.py (`flows read`, `snmp poll`, ...)."""
    from amoskys.collectors import registry

    for spec in registry.discover().values():
        module = spec.cli()
        if module is None:
            continue
        p = sub.add_parser(getattr(module, "COMMAND", spec.name), help=getattr(module, "HELP", None))
        module.add_arguments(p)
        p.set_defaults(func=module.run)


def quiet_grpc_core(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Keep gRPC's C core out of our log: it prints to stderr directly (past structlog), and its fork
    handlers log on every subprocess. Set before grpc is imported; an operator's own values win
    (``GRPC_VERBOSITY=INFO amoskys run`` shows the core's TLS handshake failures again)."""
    environ.setdefault("GRPC_VERBOSITY", "ERROR")
    environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_grpc_core()
    args = build_parser().parse_args(argv)
    if not getattr(args, "own_logging", False):
        from amoskys import logs

        logs.setup("warning")  # commands print results on stdout; only problems go to stderr
    try:
        return int(args.func(args))
    except AmoskysError as err:
        print(f"amoskys: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
