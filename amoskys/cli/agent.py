"""`amoskys agent`: the same loop with the agent profile — collectors into its own store (the outbox),
forwarded to an appliance's bus; no bus server, no dashboard."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from amoskys.cli.common import data_dir, loop_factory

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "agent",
        help="run an endpoint agent in the foreground: collectors forwarded to an appliance",
        description="Run the collectors of this host and forward their events to an appliance's bus. "
        "Its web port serves only /metrics, /healthz and /readyz ([web] listen, default 127.0.0.1:9109).",
    )
    p.add_argument(
        "--identity",
        metavar="DIR",
        help="identity bundle (amoskys agents enroll NAME --out DIR on the appliance); "
        "overrides [forwarders.bus] identity. The agent's name is the bundle's",
    )
    p.add_argument(
        "--bus", metavar="HOST:PORT", help="the appliance's bus; overrides [forwarders.bus] address"
    )
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: the agent's defaults)")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: /var/lib/amoskys-agent as root, else $XDG_STATE_HOME/amoskys-agent)",
    )
    p.add_argument("--web-listen", metavar="HOST:PORT", help="/metrics, /healthz and /readyz address")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_agent, own_logging=True, agent=True)


def cmd_agent(args: argparse.Namespace) -> int:
    from amoskys import agent, logs
    from amoskys.app import Appliance, RunOptions
    from amoskys.profile import AGENT

    identity = args.identity
    if not identity:  # the config's, else the bundle `amoskys agent enroll` left in the data dir
        unnamed = agent.load(args.config, os.environ, data_dir=args.data_dir, require_identity=False)
        if unnamed.identity is None:
            found = agent.default_identity(data_dir(args, unnamed.config)[0])
            identity = str(found) if found else None
    loaded = agent.load(
        args.config,
        os.environ,
        data_dir=args.data_dir,
        log_level=args.log_level,
        web_listen=args.web_listen,
        identity=identity,
        bus=args.bus,
    )
    config = loaded.config
    logs.setup(config.appliance.log_level, config.appliance.log_format)
    root, reason = data_dir(args, config)
    options = RunOptions(
        config=config, data_dir=root, data_dir_reason=reason, env=dict(os.environ), profile=AGENT
    )
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(Appliance(options).run())
    return 0
