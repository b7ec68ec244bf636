"""What the sub-commands share: the config and data dir they work on, the appliance's PKI and state in
it, and the common flags and argument types."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from amoskys.errors import DataDirError

if TYPE_CHECKING:
    from amoskys.config import Config
    from amoskys.paths import Layout, Mode
    from amoskys.pki.layout import ApplianceCredentials
    from amoskys.store.state import ApplianceState

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def load_config(args: argparse.Namespace) -> Config:
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


def data_dir(args: argparse.Namespace, config: Config) -> tuple[Path, str]:
    """The data dir and what chose it (the flag, the environment, the config or the default); an
    agent's default (``--agent``, or the `agent` command itself) is its own, never the appliance's."""
    from amoskys.paths import resolve_data_dir

    mode: Mode = "agent" if getattr(args, "agent", False) else "appliance"
    return resolve_data_dir(getattr(args, "data_dir", None), config.appliance.data_dir, os.environ, mode=mode)


def layout(args: argparse.Namespace, *, create: bool = False) -> tuple[Config, Layout]:
    """The loaded config and the data dir's layout. Only `run` and `certs init` create a data dir
    (`create`); for every other command a missing one is an error naming it (a typo in --data-dir
    must not make a new appliance)."""
    from amoskys.paths import Layout

    config = load_config(args)
    root, reason = data_dir(args, config)
    found = Layout(root)
    if create:
        found.ensure()
    elif not root.is_dir():
        raise DataDirError(
            f"{root}: no such data dir (chosen by {reason}); `amoskys run` or `amoskys certs init` "
            "creates one — or pass the appliance's --data-dir",
            path=str(root),
        )
    return config, found


def read_state(
    config: Config, where: Layout, action: Callable[[ApplianceState], Awaitable[T]], *, create: bool = False
) -> T:
    """`await action(state)` on the data dir's appliance state, to read it (the appliance may be
    running); without `create`, a data dir that has no store yet is an error. Changes go through
    amoskys.cli.actions instead."""
    from amoskys.store.access import appliance_state

    if not create and not where.db.exists():
        raise DataDirError(
            f"no event store at {where.db} (has the appliance run with this --data-dir?)",
            path=str(where.db),
        )

    async def run() -> T:
        async with appliance_state(where.db, config.store) as state:
            return await action(state)

    return asyncio.run(run())


async def _nothing(state: ApplianceState) -> None:
    return None


def require_store(config: Config, where: Layout) -> None:
    """Open the data dir's appliance state and read nothing: a data dir with no store yet (or one
    that cannot be opened) is an error naming it before anything is asked of the control service."""
    read_state(config, where, _nothing)


def minute(ns: int) -> str:
    """A time in nanoseconds since the epoch, as UTC ``YYYY-MM-DD HH:MM`` for a listing."""
    return f"{datetime.fromtimestamp(ns / 1e9, UTC):%Y-%m-%d %H:%M}"


def credentials(
    args: argparse.Namespace, *, create: bool = False
) -> tuple[Config, Layout, ApplianceCredentials]:
    """The appliance's PKI in the data dir; only `certs init` (`create`) makes a missing one.

    Other commands use the files as they are: re-issuing the bus server certificate is for `amoskys run`,
    `certs init` and `certs renew`, never a side effect of, say, `agents token` run without the
    appliance's `--config` (its default SANs would replace the ones the running appliance serves)."""
    from amoskys.app import appliance_credentials
    from amoskys.pki.layout import ApplianceCredentials

    config, where = layout(args, create=create)
    existing = ApplianceCredentials.in_dir(where.pki)
    if create:
        return config, where, appliance_credentials(config, where)
    if not existing.ca_cert.exists():
        raise DataDirError(
            f"{where.pki}: this data dir has no appliance CA; `amoskys certs init` (or `amoskys run`) "
            "creates it",
            path=str(where.pki),
        )
    files = (
        existing.ca_key,
        existing.server_cert,
        existing.server_key,
        existing.identity_key,
        existing.identity_cert,
        existing.identity_cert_key,
    )
    missing = [f for f in files if not f.exists()]
    if missing:
        raise DataDirError(
            f"{missing[0]}: missing from the appliance's PKI; `amoskys certs init` (or `amoskys run`) "
            "makes what is missing",
            path=str(missing[0]),
        )
    return config, where, existing


# ---------------------------------------------------------------- flags and argument types
def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: embedded defaults)")
    p.add_argument(
        "--data-dir", metavar="DIR", help="data directory (overrides AMOSKYS_DATA_DIR and the config)"
    )


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < 86_400 * 365:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def days(text: str) -> int:
    value = positive_int(text)
    if value > 365:
        raise argparse.ArgumentTypeError(f"expected 1..365 days, got {text!r}")
    return value


if TYPE_CHECKING:
    from typing import TypeAlias

    #: The sub-parsers object each command module's add_parser(sub) adds its commands to.
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
