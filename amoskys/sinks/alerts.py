"""An alert as the sinks see it: its level (Sigma's five words), the sink filter, its JSON object.

Alerts raised before levels existed carry only a severity; it maps onto a level: INFO →
informational, WARNING → medium, CRITICAL → critical (no level and no severity: informational).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from amoskys.proto import events_pb2
from amoskys.store.export import message_json, rfc3339_ns

#: The levels, lowest first (`min_level` names one of them).
LEVELS: tuple[str, ...] = ("informational", "low", "medium", "high", "critical")
_LEGACY = {
    events_pb2.Alert.INFO: "informational",
    events_pb2.Alert.WARNING: "medium",
    events_pb2.Alert.CRITICAL: "critical",
}


def level_of(alert: events_pb2.Alert) -> str:
    """The alert's level: its own, else the one its legacy severity maps to."""
    if alert.level:
        return LEVELS[min(alert.level, len(LEVELS)) - 1]
    return _LEGACY.get(alert.severity, "informational")


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts a sink delivers: those at `min_level` or above whose rule_id or rule name matches
    one of `rules` (shell-style patterns: ``amoskys.*``); no `rules`: every rule."""

    min_level: str = "informational"
    rules: tuple[str, ...] = ()

    def passes(self, alert: events_pb2.Alert) -> bool:
        if LEVELS.index(level_of(alert)) < LEVELS.index(self.min_level):
            return False
        if not self.rules:
            return True
        names = [name for name in (alert.rule_id, alert.rule) if name]
        return any(fnmatchcase(name, pattern) for pattern in self.rules for name in names)


@dataclass(frozen=True, slots=True)
class SinkAlert:
    """One stored Alert event a sink delivers."""

    store_seq: int
    received_ns: int
    envelope: events_pb2.Envelope

    @property
    def alert(self) -> events_pb2.Alert:
        return self.envelope.alert

    @property
    def level(self) -> str:
        return level_of(self.envelope.alert)


def alert_json(item: SinkAlert) -> dict[str, Any]:
    """The webhook's object of one alert: the event's identity and times (as `amoskys events export`
    writes them), its level, and the Alert body in the export's encoding."""
    env = item.envelope
    return {
        "store_seq": item.store_seq,
        "event_id": env.event_id,
        "source": env.source,
        "ts": rfc3339_ns(env.ts_ns),
        "ts_ns": str(env.ts_ns),
        "received": rfc3339_ns(item.received_ns),
        "received_ns": str(item.received_ns),
        "level": item.level,
        "alert": message_json(env.alert),
    }
