"""The agent profile's configuration: its defaults, its flags, and the name its identity bundle gives it.

Precedence, as for the appliance: flags (``--identity``, ``--bus``, ``--data-dir``, ``--web-listen``,
``--log-level``) > environment > the file > the agent's defaults (``defaults()``) > the embedded
defaults. ``--identity`` and ``--bus`` set ``[forwarders.bus] identity`` and ``address``. The agent's
name is its identity bundle's (``bundle.json``); an ``[appliance] name`` that says otherwise is a
ConfigError naming both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from amoskys import config as cfg
from amoskys.errors import ConfigError, PkiError
from amoskys.pki.layout import BUNDLE_JSON

#: The agent's `/metrics`, `/healthz` and `/readyz` address by default.
AGENT_WEB_LISTEN = "127.0.0.1:9109"
#: An agent deletes outbox rows this long after every sink acked them.
AGENT_DELETE_ACKED_AFTER_SECONDS = 3600
#: The bundle directory inside the agent's data dir, used when neither --identity nor the config names
#: one (where `amoskys agent enroll` writes it by default).
IDENTITY_DIR = "identity"


def default_identity(data_dir: Path) -> Path | None:
    """The bundle in `data_dir` (``identity/``), if one is there."""
    bundle = data_dir / IDENTITY_DIR
    return bundle if (bundle / BUNDLE_JSON).is_file() else None


def defaults() -> dict[str, Any]:
    """Where the agent's config defaults differ from the appliance's (TOML tables): an endpoint's outbox
    stays small and lets sent rows go after an hour, forwarding to the appliance's bus is on, and SNMP
    polling is the appliance's job (flow and discovery start only once an interface is set, as
    everywhere)."""
    return {
        "web": {"listen": AGENT_WEB_LISTEN},
        "store": {
            "high_water_mb": 384,
            "hard_cap_mb": 512,
            "delete_acked_after_seconds": AGENT_DELETE_ACKED_AFTER_SECONDS,
        },
        "forwarders": {"bus": {"enabled": True}},
        "collectors": {"snmp": {"enabled": False}},
    }


@dataclass(frozen=True)
class AgentConfig:
    """The agent's loaded config (``[appliance] name`` set to its bundle's) and its identity bundle."""

    config: cfg.Config
    identity: Path | None
    """The identity bundle's directory (None: only `amoskys check-config --agent` accepts none)."""


def bundle_name(bundle_dir: Path) -> str:
    """The identity name in `bundle_dir`/bundle.json (blocking: before the loop runs)."""
    path = bundle_dir / BUNDLE_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PkiError(
            f"{bundle_dir}: not an identity bundle (no {BUNDLE_JSON}); make one on the appliance with "
            "`amoskys agents enroll NAME --out DIR` and copy DIR here",
            path=str(path),
        ) from None
    except (OSError, ValueError) as err:
        raise PkiError(f"{path}: unreadable identity bundle: {err}", path=str(path)) from err
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise PkiError(f"{path}: names no identity (`name`)", path=str(path))
    return name


def flag_tables(*, identity: str | None, bus: str | None) -> dict[str, Any]:
    """`--identity` and `--bus` as the ``[forwarders.bus]`` keys they override."""
    section: dict[str, Any] = {}
    if identity:
        section["identity"] = str(Path(identity).expanduser().absolute())
    if bus:
        try:
            host, port = cfg.parse_listen(bus)
        except ValueError as err:
            raise ConfigError(f"--bus: {err}", path="--bus", value=bus) from None
        if cfg.is_wildcard_host(host) or port == 0:
            raise ConfigError(
                f"--bus: expected the appliance's bus as HOST:PORT (a specific host, a port other than 0), "
                f"got {bus!r}",
                path="--bus",
                value=bus,
            )
        section["address"] = bus
    return {"forwarders": {"bus": section}} if section else {}


def load(
    path: str | Path | None,
    env: Mapping[str, str],
    *,
    data_dir: str | None = None,
    log_level: str | None = None,
    web_listen: str | None = None,
    identity: str | None = None,
    bus: str | None = None,
    require_identity: bool = True,
) -> AgentConfig:
    """The agent's Config from its file and flags. `require_identity` False (`check-config --agent`)
    accepts a file that names no bundle yet (one is then given with --identity at start)."""
    overrides = flag_tables(identity=identity, bus=bus)
    if not require_identity and not identity:
        overrides = cfg.merge_tables(_without_identity(path), overrides)
    try:
        loaded = cfg.load(path, defaults=defaults(), overrides=overrides)
    except ConfigError as err:
        if err.path == "forwarders.bus.identity":
            raise _no_identity(err.source) from err
        raise
    config = cfg.apply_overrides(loaded, env, data_dir=data_dir, log_level=log_level, web_listen=web_listen)
    if config.web.tls == "on":
        raise ConfigError(
            "web.tls: an agent's web port serves only /metrics, /healthz and /readyz, over plain HTTP "
            '(it has no server certificate): set tls = "off" and keep [web] listen on loopback',
            path="web.tls",
            value="on",
        )
    if config.sources.nats.enabled:
        raise ConfigError(
            "sources.nats.enabled: an agent is never a fleet hub (it keeps no dashboard to show the "
            "fleet): consume the NATS stream on an appliance (`amoskys run`), and remove [sources.nats] here",
            path="sources.nats.enabled",
            value=True,
        )
    if config.sinks.all():
        raise ConfigError(
            "sinks: an agent raises no alerts (the appliance it forwards to evaluates its events), so it "
            "has no alert sinks: configure [[sinks.webhook]], [[sinks.syslog]] and [[sinks.ecs_file]] on "
            "the appliance, and remove them here",
            path="sinks",
        )
    configured = config.forwarders.bus.identity
    if not configured:
        if require_identity:  # forwarding switched off, but the agent's name is still its bundle's
            raise _no_identity(str(path or ""))
        return AgentConfig(config, None)
    bundle_dir = Path(configured).expanduser().absolute()
    name = bundle_name(bundle_dir)
    if config.appliance.name and config.appliance.name != name:
        raise ConfigError(
            f"appliance.name: {config.appliance.name!r} differs from {name!r}, the name of the identity "
            f"bundle {bundle_dir}; an agent is named by its bundle: remove [appliance] name or set it "
            f"to {name!r}",
            path="appliance.name",
            value=config.appliance.name,
        )
    named = msgspec.structs.replace(config.appliance, name=name)
    return AgentConfig(msgspec.structs.replace(config, appliance=named), bundle_dir)


def _no_identity(source: str) -> ConfigError:
    return ConfigError(
        "amoskys agent needs an identity bundle: pass --identity DIR, set [forwarders.bus] identity, or "
        f"have one in {IDENTITY_DIR}/ in its data dir (`amoskys agent enroll --token T --bus HOST:PORT` "
        "makes it there; or make one on the appliance with `amoskys agents enroll NAME --out DIR`)",
        path="forwarders.bus.identity",
        source=source,
    )


def _without_identity(path: str | Path | None) -> dict[str, Any]:
    """For a check without a bundle: forwarding off when the file names no identity (else the check
    would refuse what `--identity` completes at start)."""
    off = {"forwarders": {"bus": {"enabled": False}}}
    probe = cfg.load(path, defaults=defaults(), overrides=off)
    return {} if probe.forwarders.bus.identity else off
