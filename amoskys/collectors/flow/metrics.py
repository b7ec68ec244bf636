"""The flow collector's series: frames read and skipped, flow records, the flow table and the kernel ring."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class FlowMetrics:
    """Every ``amoskys_flow_*`` series, on the registry the appliance gives (``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # -- flow (labels: parse skip reasons and IPFIX end reasons, both fixed lists)
        self.flow_packets = Counter(
            "amoskys_flow_packets_total",
            "Frames the flow meter read from its source (capture or file), before parsing.",
            registry=r,
        )
        self.flow_packets_skipped = Counter(
            "amoskys_flow_packets_skipped_total",
            "Frames not counted into any flow, by reason (not_ip, truncated_ip, bad_ip_header, ...).",
            ["reason"],
            registry=r,
        )
        self.flow_records = Counter(
            "amoskys_flow_records_total",
            "Flow records emitted, by end reason (active_timeout: interim records of live flows).",
            ["end_reason"],
            registry=r,
        )
        self.flow_table_flows = Gauge(
            "amoskys_flow_table_flows", "Flows held in the flow table now.", registry=r
        )
        self.flow_table_evictions = Counter(
            "amoskys_flow_table_evictions_total",
            "Flows ended early because the flow table was full (max_flows); each is in a LossReport.",
            registry=r,
        )
        self.flow_kernel_packets = Counter(
            "amoskys_flow_kernel_packets_total",
            "Frames the kernel passed the capture filter on the capture interface, dropped ones included.",
            registry=r,
        )
        self.flow_kernel_drops = Counter(
            "amoskys_flow_kernel_drops_total",
            "Frames the kernel dropped because the capture ring was full (each window is in a LossReport).",
            registry=r,
        )
        self.flow_fragments_unmatched = Counter(
            "amoskys_flow_fragments_unmatched_total",
            "IP fragments seen without their first fragment (counted in a flow without ports).",
            registry=r,
        )
