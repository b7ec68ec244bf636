"""The detections' series (``amoskys_detections_*``), on the appliance's registry (``Metrics.component``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_EVAL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class DetectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.rules = Gauge(
            "amoskys_detections_rules",
            "Sigma rules by status: loaded (evaluated), disabled (loaded, switched off at runtime), "
            "unsupported (valid Sigma the engine cannot evaluate), invalid (not YAML or not Sigma).",
            ["status"],
            registry=r,
        )
        self.reloads = Counter(
            "amoskys_detections_reloads_total",
            "Rule loads (at start and after the rule files changed), by outcome (ok, failed).",
            ["outcome"],
            registry=r,
        )
        self.lag_events = Gauge(
            "amoskys_detections_lag_events",
            "Events committed to the store and not yet evaluated by the detections.",
            registry=r,
        )
        self.lag_seconds = Gauge(
            "amoskys_detections_lag_seconds",
            "Age of the oldest committed event not yet evaluated (0 when caught up).",
            registry=r,
        )
        self.evaluated = Counter(
            "amoskys_detections_events_evaluated_total",
            "Events evaluated against the rules, by path: live (from the fan-out) or catchup (read back "
            "from the store: missed by the fan-out, or committed while the detections were not running).",
            ["path"],
            registry=r,
        )
        self.skipped = Counter(
            "amoskys_detections_events_skipped_total",
            "Events not evaluated, by reason: relayed (came through a relay or the NATS hub, and "
            '[detections] relayed = "off"), pruned (deleted by retention or the hard cap before they were '
            "evaluated).",
            ["reason"],
            registry=r,
        )
        self.matches = Counter(
            "amoskys_detections_matches_total",
            "Rule matches (before dedup into alerts), by rule level.",
            ["level"],
            registry=r,
        )
        self.suppressed = Counter(
            "amoskys_detections_suppressed_total",
            "Rule matches a suppression kept from raising an alert.",
            registry=r,
        )
        self.alert_events = Counter(
            "amoskys_detections_alert_events_total",
            "Alert events published, by kind: opened (a new alert) or follow_up (an alert's repeats).",
            ["kind"],
            registry=r,
        )
        self.eval_seconds = Histogram(
            "amoskys_detections_eval_seconds",
            "Time to evaluate one batch of events (in the evaluation thread).",
            buckets=_EVAL_BUCKETS,
            registry=r,
        )
