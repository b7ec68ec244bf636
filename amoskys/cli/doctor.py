"""`amoskys doctor`: what will work on this box with this config, what will not, and the exact fix."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers
    from amoskys.doctor import Report


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "doctor",
        help="check that this box can run the configured appliance (or agent); changes nothing",
        description="Check every enabled collector and service: privileges and capabilities, interfaces, "
        "ports, the data dir and its free space, the clock, certificates, SNMP targets, NATS and the "
        "upstream bus. Read-only: creates nothing. Exit 0 when everything enabled can work, 2 when "
        "something enabled cannot.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: embedded defaults)")
    p.add_argument(
        "--data-dir", metavar="DIR", help="data directory (overrides AMOSKYS_DATA_DIR and the config)"
    )
    p.add_argument("--agent", action="store_true", help="check `amoskys agent` (its defaults and identity)")
    p.add_argument("--identity", metavar="DIR", help="with --agent: the identity bundle it would use")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from amoskys.doctor import Finding, Report
    from amoskys.errors import ConfigError, PkiError

    try:
        report = _diagnose(args)
    except (ConfigError, PkiError) as err:
        fix = f"fix {err.path} in the config" if isinstance(err, ConfigError) and err.path else ""
        report = Report([Finding("config", "fail", str(err), fix)])
    _print(report, as_json=args.json)
    return report.exit_code


def _diagnose(args: argparse.Namespace) -> Report:
    from pathlib import Path

    from amoskys import agent
    from amoskys.cli.common import data_dir, load_config
    from amoskys.doctor import Finding, diagnose
    from amoskys.profile import AGENT, APPLIANCE

    if not args.agent:
        config = load_config(args)
        root, reason = data_dir(args, config)
        return diagnose(config, root, reason, profile=APPLIANCE)
    loaded = agent.load(
        args.config, os.environ, data_dir=args.data_dir, identity=args.identity, require_identity=False
    )
    root, reason = data_dir(args, loaded.config)
    identity = loaded.identity or agent.default_identity(root)
    if identity is not None and loaded.identity is None:  # the config the agent runs with: this bundle's
        loaded = agent.load(args.config, os.environ, data_dir=args.data_dir, identity=str(identity))
    report = diagnose(loaded.config, root, reason, profile=AGENT, identity=identity)
    if identity is None:  # the agent is named by its bundle: it does not start without one
        report.add(
            Finding(
                "pki:identity",
                "fail",
                f"no identity bundle: none in {Path(root) / agent.IDENTITY_DIR}, and neither --identity nor "
                "[forwarders.bus] identity names one",
                "amoskys agent enroll --token T --bus HOST:PORT (or copy the bundle made by "
                "`amoskys agents enroll NAME --out DIR` on the appliance and pass --identity DIR)",
            )
        )
    return report


def _print(report: Report, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.to_text())
