"""The hub's series (``amoskys_hub_*``), on the registry the appliance gives (``Metrics.component``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages = Counter(
            "amoskys_hub_messages_total",
            "Messages the hub took from the NATS stream, by outcome (committed, duplicate, rejected, "
            "retried).",
            ["outcome"],
            registry=r,
        )
        self.rejected = Counter(
            "amoskys_hub_rejected_total",
            "Messages the hub refused for good and terminated, by reason (the bus's reasons, "
            "bad_subject, denied_source).",
            ["reason"],
            registry=r,
        )
        self.acks = Counter(
            "amoskys_hub_acks_total",
            "AckAll acknowledgements the hub sent (one per committed run).",
            registry=r,
        )
        self.naks = Counter(
            "amoskys_hub_naks_total",
            "Messages the hub NAKed for redelivery later (the store said RETRY).",
            registry=r,
        )
        self.lag = Gauge(
            "amoskys_hub_lag_messages",
            "Messages of the hub's subjects in the stream not yet delivered to it (the consumer's "
            "num_pending).",
            registry=r,
        )
        self.ack_pending = Gauge(
            "amoskys_hub_ack_pending_messages",
            "Messages delivered to the hub and not acknowledged yet (the consumer's num_ack_pending).",
            registry=r,
        )
        self.connected = Gauge(
            "amoskys_hub_connected",
            "1 while the hub is connected to NATS and bound to its consumer.",
            registry=r,
        )
        self.degraded = Gauge(
            "amoskys_hub_degraded",
            "1 while the hub cannot consume (NATS unreachable, the stream or consumer missing or refused).",
            registry=r,
        )
        self.gaps = Counter(
            "amoskys_hub_sequence_gap_events_total",
            "source_seq numbers skipped per (source, boot) in what the hub received, counted only for "
            "sources whose every kind the hub's subjects take.",
            registry=r,
        )
        self.boxes = Gauge(
            "amoskys_hub_boxes", "Boxes the hub has received events from since it started.", registry=r
        )
