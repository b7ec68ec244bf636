"""`amoskys run`, `amoskys check-config FILE` and `amoskys config sample`: the appliance and its config."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

from amoskys.cli.common import add_common, data_dir, load_config, loop_factory

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("run", help="run the appliance in the foreground")
    add_common(p)
    p.add_argument(
        "--web-listen", metavar="HOST:PORT", help="dashboard and /metrics address (port 0: any free port)"
    )
    p.add_argument("--bus-listen", metavar="HOST:PORT", help="EventBus gRPC address (port 0: any free port)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run, own_logging=True)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--agent", action="store_true", help="an agent's config (`amoskys agent`): its defaults and identity"
    )
    p.set_defaults(func=cmd_check_config)

    actions = sub.add_parser("config", help="configuration helpers").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    p = actions.add_parser("sample", help="print the sample amoskys.toml (every key, commented)")
    p.add_argument("--agent", action="store_true", help="the agent's sample (agent.toml) instead")
    p.set_defaults(func=cmd_config_sample)


def cmd_run(args: argparse.Namespace) -> int:
    from amoskys import logs
    from amoskys.app import Appliance, RunOptions

    config = load_config(args)
    logs.setup(config.appliance.log_level, config.appliance.log_format)
    root, reason = data_dir(args, config)
    appliance = Appliance(
        RunOptions(config=config, data_dir=root, data_dir_reason=reason, env=dict(os.environ))
    )
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(appliance.run())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from amoskys import agent
    from amoskys import config as cfg

    if args.agent:  # with its identity bundle, when the file names one: the names must agree
        loaded = agent.load(args.file, {}, require_identity=False)
        print(f"{args.file}: ok (agent {loaded.config.appliance.name or 'without an identity yet'})")
        return 0
    cfg.load(args.file)
    print(f"{args.file}: ok")
    return 0


def cmd_config_sample(args: argparse.Namespace) -> int:
    from amoskys import sample_config

    sys.stdout.write(sample_config.assemble_agent() if args.agent else sample_config.assemble())
    return 0
