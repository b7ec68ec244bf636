"""The built-in detectors, by name, built from their ``[detections.<name>]`` settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amoskys.config import DetectionsConfig
from amoskys.detections.builtin.cert_expiry import CertExpiry, CertFile
from amoskys.detections.builtin.chain_fork import RULE as CHAIN_FORK
from amoskys.detections.builtin.exec_path import ExecPath
from amoskys.detections.builtin.finding import Detector
from amoskys.detections.builtin.ioc import Ioc
from amoskys.detections.builtin.loss import Loss
from amoskys.detections.builtin.mac_change import MacChange
from amoskys.detections.builtin.new_device import NewDevice
from amoskys.detections.builtin.port_scan import PortScan
from amoskys.detections.builtin.silent import Silent
from amoskys.detections.builtin.snmp_health import SnmpHealth
from amoskys.detections.sigma.model import Rule

#: Every detector's name, in the order they are built (and documented).
NAMES = (
    "new_device",
    "mac_change",
    "port_scan",
    "ioc",
    "exec_path",
    "snmp_health",
    "loss",
    "silent",
    "cert_expiry",
)


def build(
    config: DetectionsConfig,
    *,
    silent_after_heartbeats: int,
    appliance: str,
    certs: Callable[[], Sequence[CertFile]] = lambda: (),
) -> list[Detector]:
    """The enabled detectors (none when [detections] is off)."""
    if not config.enabled:
        return []
    made: list[Detector] = []
    if config.new_device.enabled:
        made.append(NewDevice())
    if config.mac_change.enabled:
        made.append(MacChange())
    if config.port_scan.enabled:
        made.append(PortScan(config.port_scan))
    if config.ioc.enabled and config.ioc.ioc_files:
        made.append(Ioc(config.ioc))
    if config.exec_path.enabled:
        made.append(ExecPath(config.exec_path))
    if config.snmp_health.enabled:
        made.append(SnmpHealth(config.snmp_health))
    if config.loss.enabled:
        made.append(Loss())
    if config.silent.enabled:
        made.append(Silent(silent_after_heartbeats, ignore=frozenset({appliance})))
    if config.cert_expiry.enabled:
        made.append(CertExpiry(config.cert_expiry, certs))
    return made


def all_rules() -> tuple[Rule, ...]:
    """The rules of every built-in detector (enabled or not), and the bus's chain-fork rule."""
    cfg = DetectionsConfig()
    made = build(cfg, silent_after_heartbeats=3, appliance="")
    made.append(Ioc(cfg.ioc))
    return (*(r for d in made for r in d.rules), CHAIN_FORK)
