"""Enrolling a remote agent on disk: its bundle, and the appliance's copy of its certificate.

``enroll`` is the whole of ``amoskys agents enroll``: choose the bus address the bundle names, write
the bundle (``enroll_agent``), record the identity (a callback: the caller owns the store) and keep
the agent's certificate as ``pki/agents/<name>.crt`` (``write_agent_cert``; ``agent_cert_path`` is
the one place that path is spelled, for the pages and metrics that read it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from amoskys.config import BusConfig, format_listen, is_wildcard_host, parse_listen
from amoskys.errors import ConfigError, PkiError
from amoskys.pki import _files
from amoskys.pki.identities import create_identity_key, key_id, public_key_raw
from amoskys.pki.issuance import LEAF_VALID_DAYS, appliance_identity, cert_accepts_host, issue_client_cert
from amoskys.pki.layout import (
    BUNDLE_JSON,
    CA_CERT,
    CLIENT_CERT,
    CLIENT_KEY,
    IDENTITY_KEY,
    ApplianceCredentials,
)
from amoskys.pki.names import ROLES, Role, identity_uri, same_name, validate_name

AGENTS_DIR = "agents"
"""Directory inside the PKI dir holding the certificate of every enrolled agent, as ``<name>.crt``."""


@dataclass(frozen=True)
class EnrolmentBundle:
    """What ``enroll_agent`` wrote, and what the appliance records about the new identity."""

    dir: Path
    name: str
    role: str
    public_key_raw: bytes
    key_id: str
    cert_serial: int
    not_after: datetime


def agent_cert_path(pki_dir: Path, name: str) -> Path:
    """Where the appliance keeps the certificate of enrolled agent `name`."""
    return pki_dir / AGENTS_DIR / f"{name}.crt"


def agent_cert_paths(pki_dir: Path) -> list[Path]:
    """The kept certificates of every enrolled agent, sorted by name (the file stem)."""
    return sorted((pki_dir / AGENTS_DIR).glob("*.crt"))


def write_agent_cert(pki_dir: Path, name: str, cert_pem: bytes) -> Path:
    """Keep `cert_pem` as the certificate of enrolled agent `name` (atomically, 0600); return its path."""
    path = agent_cert_path(pki_dir, validate_name(name))
    _files.ensure_dir(path.parent)
    _files.write(path, cert_pem, _files.CERT_MODE)
    return path


def enroll_agent(
    credentials: ApplianceCredentials,
    *,
    name: str,
    role: Role,
    trust_domain: str,
    bus_address: str,
    out_dir: Path,
    valid_days: int = LEAF_VALID_DAYS,
    now: datetime | None = None,
) -> EnrolmentBundle:
    """Issue a client certificate and an Ed25519 identity for a remote agent into `out_dir`.

    Writes client.crt, client.key (0600), identity.ed25519 (0600), ca.crt and bundle.json. Refuses to
    overwrite an existing bundle (PkiError naming the file): its keys may be in use. Refuses the
    appliance's own name, ignoring case (read from its client certificate): no enrolled identity may
    ever speak as the appliance.
    """
    validate_name(name)
    own = appliance_identity(credentials, trust_domain)
    if same_name(name, own):
        raise PkiError(
            f"cannot enrol {name!r}: that is this appliance's own name ({own!r}, compared ignoring case), "
            "and no agent or relay may publish as the appliance; choose another name",
            path=str(credentials.identity_cert),
        )
    uri = identity_uri(trust_domain, name)
    if role not in ROLES:
        raise PkiError(f"role {role!r} is not valid: expected one of {', '.join(ROLES)}")
    paths = {n: out_dir / n for n in (CLIENT_CERT, CLIENT_KEY, IDENTITY_KEY, CA_CERT, BUNDLE_JSON)}
    for path in paths.values():
        if path.exists():
            raise PkiError(f"{path}: already exists; choose an empty directory", path=str(path))
    ca_pem = _files.read(credentials.ca_cert)
    _files.ensure_dir(out_dir)
    cert = issue_client_cert(
        credentials.ca_cert,
        credentials.ca_key,
        uri=uri,
        common_name=name,
        cert_path=paths[CLIENT_CERT],
        key_path=paths[CLIENT_KEY],
        valid_days=valid_days,
        now=now,
    )
    identity = create_identity_key(paths[IDENTITY_KEY])
    kid = key_id(identity.public_key())
    _files.write(paths[CA_CERT], ca_pem, _files.CERT_MODE)
    bundle = {
        "name": name,
        "role": role,
        "bus_address": bus_address,
        "trust_domain": trust_domain,
        "key_id": kid,
    }
    _files.write(paths[BUNDLE_JSON], (json.dumps(bundle, indent=2) + "\n").encode(), _files.CERT_MODE)
    return EnrolmentBundle(
        dir=out_dir,
        name=name,
        role=role,
        public_key_raw=public_key_raw(identity),
        key_id=kid,
        cert_serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
    )


def enroll(
    credentials: ApplianceCredentials,
    bus: BusConfig,
    *,
    pki_dir: Path,
    run_json: Path,
    name: str,
    role: Role,
    out_dir: Path,
    record: Callable[[EnrolmentBundle], object],
    bus_address: str | None = None,
) -> EnrolmentBundle:
    """Enrol agent `name`: write its bundle into `out_dir`, have `record` store the identity, then keep
    its certificate as ``pki/agents/<name>.crt``.

    The bundle names `bus_address` (the ``--bus-address`` flag) when given, else the one
    ``bundle_bus_address`` chooses. Nothing is written when the address or the name is refused.
    """
    address = bundle_bus_address(bus_address, bus, run_json=run_json, server_cert=credentials.server_cert)
    bundle = enroll_agent(
        credentials, name=name, role=role, trust_domain=bus.trust_domain, bus_address=address, out_dir=out_dir
    )
    record(bundle)
    write_agent_cert(pki_dir, bundle.name, _files.read(out_dir / CLIENT_CERT))
    return bundle


def bundle_bus_address(flag: str | None, bus: BusConfig, *, run_json: Path, server_cert: Path) -> str:
    """The bus address an agent's bundle names: --bus-address, else `[bus] advertise_address`, else the
    running appliance's bus address (run.json), else `[bus] listen` — the last two only when they name
    a specific host and port. Its host must be one the bus server certificate names."""
    if flag:
        try:
            host, port = parse_listen(flag)
        except ValueError as err:
            raise ConfigError(f"--bus-address: {err}", path="--bus-address", value=flag) from None
        if is_wildcard_host(host) or port == 0:
            raise ConfigError(
                f"--bus-address: expected the HOST:PORT agents dial (a specific host, a port other than 0), "
                f"got {flag!r}",
                path="--bus-address",
                value=flag,
            )
        source = "--bus-address"
    elif bus.advertise_address:
        host, port = parse_listen(bus.advertise_address)
        source = "[bus] advertise_address"
    else:
        running = _running_bus_address(run_json)
        host, port = running or parse_listen(bus.listen)
        source = f"the running appliance's bus ({run_json})" if running else "[bus] listen"
        if is_wildcard_host(host) or port == 0:
            raise ConfigError(
                f"agents enroll: {source} is {format_listen(host, port)}, which agents cannot dial; "
                "pass --bus-address HOST:PORT or set [bus] advertise_address",
                path="$.bus.advertise_address",
            )
    accepted, names = cert_accepts_host(server_cert, host)
    if not accepted:
        raise ConfigError(
            f"agents enroll: {source} names host {host!r}, which the bus server certificate "
            f"{server_cert} does not (it names {names}); add it to [bus] server_dns_names or "
            "server_ip_addresses and run `amoskys certs renew`, or dial one of those",
            path=source,
            value=host,
        )
    return format_listen(host, port)


def _running_bus_address(run_json: Path) -> tuple[str, int] | None:
    """The bus host and port run.json names, when the appliance that wrote it is still running."""
    try:
        info = json.loads(run_json.read_text())
        pid, bus = info["pid"], info["bus"]
        host, port = bus["host"], bus["port"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(pid, int) and pid > 0 and isinstance(host, str) and host and isinstance(port, int)):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # stale: left by an appliance that did not stop cleanly
    except PermissionError:
        pass  # alive, owned by another user
    return host, port
