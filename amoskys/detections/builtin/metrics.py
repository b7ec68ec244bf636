"""The built-in detectors' series (``amoskys_detections_builtin_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class BuiltinMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.findings = Counter(
            "amoskys_detections_builtin_findings_total",
            "Findings of the built-in detectors (before dedup into alerts), by rule id.",
            ["rule"],
            registry=r,
        )
        self.suppressed = Counter(
            "amoskys_detections_builtin_suppressed_total",
            "Findings of the built-in detectors a suppression or a disabled rule kept from raising an alert.",
            registry=r,
        )
        self.flow_starts = Counter(
            "amoskys_detections_flow_starts_total",
            "New flows the capture handed to the flow detectors as they started (port scan, IOC).",
            registry=r,
        )
        self.flow_starts_dropped = Counter(
            "amoskys_detections_flow_starts_dropped_total",
            "New flows not judged at their start: the detectors fell a full queue behind the capture.",
            registry=r,
        )
        self.dropped = Counter(
            "amoskys_detections_builtin_events_dropped_total",
            "Events the built-in detectors did not see: they fell a full subscription behind the bus.",
            registry=r,
        )
