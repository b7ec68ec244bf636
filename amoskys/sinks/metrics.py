"""The alert sinks' own series (lag, sent and retries are the shared forwarder series, by sink name)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Outcomes of an alert at a sink (the `outcome` label).
DELIVERED, FILTERED, REJECTED, UNREADABLE = "delivered", "filtered", "rejected", "unreadable"


class SinkMetrics:
    """Series of every alert sink; `sink` is a configured sink's name (bounded by the config)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.alerts = Counter(
            "amoskys_sink_alerts_total",
            "Alerts a sink dealt with, by outcome: delivered, filtered (left out by min_level or rules), "
            "rejected (refused for good by the receiver), unreadable (an envelope that does not parse).",
            ["sink", "outcome"],
            registry=registry,
        )
        self.webhook_responses = Counter(
            "amoskys_sink_webhook_responses_total",
            "Webhook requests by answer: the HTTP status class (2xx .. 5xx), or error (no answer).",
            ["sink", "status_class"],
            registry=registry,
        )
        self.webhook_request_seconds = Histogram(
            "amoskys_sink_webhook_request_seconds",
            "Time from sending a webhook request to its answer.",
            ["sink"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.syslog_truncated = Counter(
            "amoskys_sink_syslog_truncated_total",
            "syslog messages cut to 2048 octets to fit one UDP datagram (marked ' [truncated]').",
            ["sink"],
            registry=registry,
        )
        self.syslog_connects = Counter(
            "amoskys_sink_syslog_connects_total",
            "TCP or TLS connections a syslog sink opened (a reconnect after an error counts again).",
            ["sink"],
            registry=registry,
        )
        self.ecs_file_rotations = Counter(
            "amoskys_sink_ecs_file_rotations_total",
            "Times an ECS file sink rotated its file (path -> path.1 -> ... -> path.keep).",
            ["sink"],
            registry=registry,
        )
