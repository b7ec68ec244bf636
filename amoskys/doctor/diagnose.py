"""`diagnose`: every doctor check for one config and data dir, in the order an operator reads them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from amoskys.config import Config, enrol_listen_address, parse_listen
from amoskys.doctor import certs, collectors, host, network
from amoskys.doctor.findings import Finding, Report
from amoskys.paths import Layout
from amoskys.profile import APPLIANCE, Profile
from amoskys.store.schema import SCHEMA_VERSION


def diagnose(
    config: Config,
    data_dir: Path,
    reason: str,
    *,
    profile: Profile = APPLIANCE,
    identity: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Report:
    """Check what `amoskys run` (or `amoskys agent`, with the agent `profile` and its `identity`
    bundle) would need on this box, creating nothing."""
    layout = Layout(data_dir)
    report = Report()
    report.add(host.privileges(), host.clock())
    report.add(
        *host.data_dir(data_dir, reason, hard_cap_mb=config.store.hard_cap_mb, schema_version=SCHEMA_VERSION)
    )
    running = host.running_ports(layout.run_json)
    for listener in _listeners(config, profile):
        report.add(host.port(listener, running))
    if profile.serves_bus:
        report.add(*certs.appliance_pki(layout.pki))
    if config.web.metrics_token_file:
        report.add(_readable("web:metrics_token", config.web.metrics_token_file, "[web] metrics_token_file"))
    report.add(*collectors.collectors(config.collectors.section_named, data_dir, environ=environ))
    report.add(*_forwarders(config, identity))
    report.add(*_sources(config))
    if profile.dashboard:
        report.add(*_detections(config))
    return report


def _listeners(config: Config, profile: Profile) -> list[host.Listener]:
    web_host, web_port = parse_listen(config.web.listen)
    found = [host.Listener("web", web_host, web_port, "[web] listen / --web-listen")]
    if profile.serves_bus:
        bus_host, bus_port = parse_listen(config.bus.listen)
        found.append(host.Listener("bus", bus_host, bus_port, "[bus] listen / --bus-listen"))
        enrol = enrol_listen_address(config.bus)
        if enrol is not None:
            found.append(host.Listener("enrol", *enrol, "[bus] enrol_listen", optional=True))
    return found


def _forwarders(config: Config, identity: Path | None) -> list[Finding]:
    found: list[Finding] = []
    forwarders = config.forwarders
    bus = getattr(forwarders, "bus", None)
    if bus is not None and bus.enabled:
        bundle = identity or (Path(bus.identity).expanduser() if bus.identity else None)
        if bundle is not None:
            found.extend(certs.identity_bundle(bundle))
        if bus.address:
            found.append(network.tcp("forwarder:bus", bus.address, "[forwarders.bus] address / --bus"))
        elif bundle is None or not (bundle / "bundle.json").is_file():
            found.append(
                Finding(
                    "forwarder:bus",
                    "fail",
                    "no address to forward to",
                    "set [forwarders.bus] address (or --bus HOST:PORT)",
                )
            )
    nats = getattr(forwarders, "nats", None)
    if nats is not None and getattr(nats, "enabled", False):
        found.append(network.nats_server("forwarder:nats", nats))
    return found


def _sources(config: Config) -> list[Finding]:
    sources = getattr(config, "sources", None)
    nats = getattr(sources, "nats", None) if sources is not None else None
    if nats is not None and getattr(nats, "enabled", False):
        return [network.nats_server("source:nats", nats)]
    return []


def _detections(config: Config) -> list[Finding]:
    detections = getattr(config, "detections", None)
    if detections is None or not detections.enabled:
        return []
    return [
        _readable("detections", path, "[detections] sigma_paths", directory_ok=True)
        for path in detections.sigma_paths
    ]


def _readable(subject: str, path: str, setting: str, *, directory_ok: bool = False) -> Finding:
    p = Path(path).expanduser()
    if directory_ok and p.is_dir():
        ok = os.access(p, os.R_OK | os.X_OK)
    else:
        ok = p.is_file() and os.access(p, os.R_OK)
    if ok:
        return Finding(subject, "ok", f"{p} is readable")
    why = "does not exist" if not p.exists() else f"is not readable by uid {os.geteuid()}"
    return Finding(subject, "fail", f"{p} {why}", f"create it, or fix {setting}")
