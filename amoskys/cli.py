"""Command-line parsing and the sub-commands: `amoskys run`, `check-config`, `certs init`, ..."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from amoskys import __version__
from amoskys.errors import AmoskysError


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _load_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from amoskys import config as cfg

    loaded = cfg.load(args.config)
    return cfg.apply_overrides(
        loaded,
        os.environ,
        data_dir=getattr(args, "data_dir", None),
        log_level=getattr(args, "log_level", None),
        web_listen=getattr(args, "web_listen", None),
        bus_listen=getattr(args, "bus_listen", None),
    )


def _data_dir(args: argparse.Namespace, config, mode: str = "appliance") -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    from amoskys.paths import resolve_data_dir

    return resolve_data_dir(getattr(args, "data_dir", None), config.appliance.data_dir, os.environ, mode=mode)  # type: ignore[arg-type]


# ---------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from amoskys import logs
    from amoskys.app import Appliance, RunOptions

    config = _load_config(args)
    logs.setup(config.appliance.log_level, config.appliance.log_format)
    data_dir, reason = _data_dir(args, config)
    appliance = Appliance(
        RunOptions(config=config, data_dir=data_dir, data_dir_reason=reason, env=dict(os.environ))
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(appliance.run())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from amoskys import config as cfg

    cfg.load(args.file)
    print(f"{args.file}: ok")
    return 0


def cmd_config_sample(args: argparse.Namespace) -> int:
    from importlib import resources

    sys.stdout.write(resources.files("amoskys").joinpath("amoskys.toml").read_text())
    return 0


def cmd_certs_init(args: argparse.Namespace) -> int:
    from amoskys.app import appliance_name
    from amoskys.paths import Layout
    from amoskys.pki import ensure_appliance_pki

    config = _load_config(args)
    data_dir, _ = _data_dir(args, config)
    layout = Layout(data_dir)
    layout.ensure()
    creds = ensure_appliance_pki(
        layout.pki,
        name=appliance_name(config),
        trust_domain=config.bus.trust_domain,
        dns_names=config.bus.server_dns_names,
        ip_addresses=config.bus.server_ip_addresses,
    )
    if creds.created:
        print(f"created in {layout.pki}: {', '.join(creds.created)}")
    else:
        print(f"certificates and identity already present in {layout.pki}")
    return 0


# ---------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: embedded defaults)")
    p.add_argument(
        "--data-dir", metavar="DIR", help="data directory (overrides AMOSKYS_DATA_DIR and the config)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amoskys", description="AMOSKYS edge security sensor")
    parser.add_argument("--version", action="version", version=f"amoskys {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the appliance in the foreground")
    _add_common(p)
    p.add_argument(
        "--web-listen", metavar="HOST:PORT", help="dashboard and /metrics address (port 0: any free port)"
    )
    p.add_argument("--bus-listen", metavar="HOST:PORT", help="EventBus gRPC address (port 0: any free port)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("config", help="configuration helpers").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    p.add_parser("sample", help="print the shipped amoskys.toml (every key, commented)").set_defaults(
        func=cmd_config_sample
    )

    certs = sub.add_parser("certs", help="certificates and identities").add_subparsers(
        dest="certs_command", required=True, metavar="ACTION"
    )
    p = certs.add_parser("init", help="create the CA, bus server certificate and identity if missing")
    _add_common(p)
    p.set_defaults(func=cmd_certs_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AmoskysError as err:
        print(f"amoskys: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
