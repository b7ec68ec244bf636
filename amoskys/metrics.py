"""Our own Prometheus registry and every metric object the appliance exports.

Names follow ``amoskys_<subsystem>_<name>_<unit>``; counters end in ``_total``; label values are
bounded (kinds, reasons, collector names, never event ids or addresses).
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from amoskys import __version__

# `*_created` series double the exposition for no use on an appliance (Prometheus ignores them)
disable_created_metrics()

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Metrics:
    """Every metric of one appliance, on a registry of its own (tests build as many as they like)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        PlatformCollector(registry=r)
        self.build_info = Info("amoskys_build", "Version and runtime of this AMOSKYS build.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.up = Gauge(
            "amoskys_up", "1 once the appliance is ready, 0 while starting or stopping.", registry=r
        )
        self.start_time = Gauge("amoskys_start_time_seconds", "Unix time the appliance started.", registry=r)

        # -- store
        self.store_rows = Gauge("amoskys_store_rows", "Events held in the store.", registry=r)
        self.store_bytes = Gauge(
            "amoskys_store_bytes", "Size of the store's files.", ["file"], registry=r
        )  # file: db, wal
        self.store_batch_events = Histogram(
            "amoskys_store_batch_events",
            "Events per committed writer transaction.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_commit_seconds = Histogram(
            "amoskys_store_commit_seconds",
            "Time to write and commit one writer transaction.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_queue_events = Gauge(
            "amoskys_store_queue_events", "Events waiting for the writer.", registry=r
        )
        self.store_committed = Counter(
            "amoskys_store_events_committed_total", "Events durably committed, by kind.", ["kind"], registry=r
        )
        self.store_duplicates = Counter(
            "amoskys_store_events_duplicate_total",
            "Events already stored (same source and event_id).",
            ["kind"],
            registry=r,
        )
        self.store_lost = Counter(
            "amoskys_store_events_lost_total",
            "Events lost or dropped by the store, by reason.",
            ["reason"],
            registry=r,
        )
        self.store_errors = Counter(
            "amoskys_store_errors_total",
            "Writer transactions that failed, by reason.",
            ["reason"],
            registry=r,
        )
        self.store_space_state = Gauge(
            "amoskys_store_space_state",
            "1 for the store's current space state (ok, high_water, hard_cap), 0 for the others.",
            ["state"],
            registry=r,
        )

        # -- bus
        self.bus_batches = Counter(
            "amoskys_bus_batches_total",
            "Batches answered, by ack status (ok, retry, unauthorized, invalid) and reason.",
            ["status", "reason"],
            registry=r,
        )
        self.bus_events = Counter(
            "amoskys_bus_events_total",
            "Events judged by the bus: accepted, duplicate, or rejected with a reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.bus_batch_events = Histogram(
            "amoskys_bus_batch_events", "Events per received batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.bus_ack_seconds = Histogram(
            "amoskys_bus_ack_seconds",
            "Time from receiving a batch to its ack.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bus_quota_exceeded = Counter(
            "amoskys_bus_quota_exceeded_total",
            "Batches answered RETRY because a source exceeded its quota.",
            registry=r,
        )
        self.bus_store_failures = Counter(
            "amoskys_bus_store_failures_total", "Batches answered RETRY because the store failed.", registry=r
        )
        self.bus_events_skewed = Counter(
            "amoskys_bus_events_skewed_total",
            "Accepted events whose ts_ns is more than 5 minutes ahead of this appliance's clock.",
            registry=r,
        )
        self.bus_chain_forks = Counter(
            "amoskys_bus_chain_forks_total",
            "Batches whose prev_digest forked the sender's chain.",
            registry=r,
        )
        self.bus_local_lost = Counter(
            "amoskys_bus_local_events_lost_total", "Local collector events whose commit failed.", registry=r
        )
        self.bus_subscriber_dropped = Counter(
            "amoskys_bus_subscriber_dropped_total",
            "Committed events a slow live subscriber dropped (its own oldest).",
            ["subscriber"],
            registry=r,
        )
        self.pki_cert_expiry = Gauge(
            "amoskys_pki_cert_expiry_timestamp_seconds",
            "Unix time at which a certificate expires (ca, server, client, or agent:<name>).",
            ["cert"],
            registry=r,
        )

        # -- collectors
        self.collector_up = Gauge(
            "amoskys_collector_up", "1 while the collector runs, else 0.", ["collector"], registry=r
        )
        self.collector_state = Gauge(
            "amoskys_collector_state",
            "1 for the collector's current state (running, stopped, backoff, disabled), 0 for the others.",
            ["collector", "state"],
            registry=r,
        )
        self.collector_events = Counter(
            "amoskys_collector_events_total", "Events the collector published.", ["collector"], registry=r
        )
        self.collector_errors = Counter(
            "amoskys_collector_errors_total",
            "Errors of the collector: crashes and the failures it reports itself.",
            ["collector"],
            registry=r,
        )
        self.collector_restarts = Counter(
            "amoskys_collector_restarts_total",
            "Times the collector was started again (after a crash, or by an operator).",
            ["collector"],
            registry=r,
        )
        self.collector_busy = Counter(
            "amoskys_collector_busy_seconds_total",
            "Wall-clock seconds the collector spent collecting (inside poll collects and busy() blocks).",
            ["collector"],
            registry=r,
        )
        self.collector_ticks_skipped = Counter(
            "amoskys_collector_ticks_skipped_total",
            "Poll ticks skipped because the previous collect was still running.",
            ["collector"],
            registry=r,
        )

        # -- process
        self.process_events = Counter(
            "amoskys_process_events_total",
            "Process events published, by kind (exec, exit, snapshot) and how they were seen (netlink, polling, snapshot).",
            ["kind", "via"],
            registry=r,
        )
        self.process_exec_enrichment = Counter(
            "amoskys_process_exec_enrichment_total",
            "Exec events by what /proc still held when read: complete (exe and argv), partial, gone.",
            ["result"],
            registry=r,
        )
        self.process_enrichment_ratio = Gauge(
            "amoskys_process_enrichment_ratio",
            "Share of exec events since the collector started whose exe and argv were read from /proc.",
            registry=r,
        )
        self.process_unreadable = Counter(
            "amoskys_process_unreadable_fields_total",
            "Fields of published process events that could not be read, by field.",
            ["field"],
            registry=r,
        )
        self.process_mode = Gauge(
            "amoskys_process_mode",
            "1 for the mode the process collector runs in (netlink, polling), 0 for the other.",
            ["mode"],
            registry=r,
        )
        self.process_lost = Counter(
            "amoskys_process_events_lost_total",
            "Proc connector messages lost (gaps in the kernel's per-CPU sequence), by reason.",
            ["reason"],
            registry=r,
        )  # reason: netlink_overrun, sequence_gap
        self.process_overruns = Counter(
            "amoskys_process_netlink_overruns_total",
            "Receive-buffer overruns (ENOBUFS) of the proc connector socket.",
            registry=r,
        )
        self.process_tracked = Gauge(
            "amoskys_process_tracked_processes", "Live processes in the collector's table.", registry=r
        )
        self.process_snapshot_seconds = Gauge(
            "amoskys_process_snapshot_duration_seconds", "Wall time the last snapshot took.", registry=r
        )
        self.process_snapshot_processes = Gauge(
            "amoskys_process_snapshot_processes", "Processes in the last snapshot.", registry=r
        )
        self.process_enrich_delay = Histogram(
            "amoskys_process_enrich_delay_seconds",
            "Time from a process's exec (kernel time) to the start of its /proc read.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.process_hash_cache_entries = Gauge(
            "amoskys_process_hash_cache_entries", "Executables whose SHA-256 is cached.", registry=r
        )
        self.process_hashed_bytes = Counter(
            "amoskys_process_hashed_bytes_total",
            "Bytes of executables read to compute their SHA-256.",
            registry=r,
        )

        # -- host
        from amoskys.collectors.host.export import HostExporter  # series listed in its docstring

        self.host = HostExporter()
        r.register(self.host)

        # -- snmp (label `target`: configured target names, bounded by the config)
        self.snmp_target_up = Gauge(
            "amoskys_snmp_target_up",
            "1 when the target's last poll succeeded, else 0.",
            ["target"],
            registry=r,
        )
        self.snmp_poll_duration = Gauge(
            "amoskys_snmp_poll_duration_seconds",
            "Duration of the target's last poll.",
            ["target"],
            registry=r,
        )
        self.snmp_poll_seconds = Histogram(
            "amoskys_snmp_poll_seconds",
            "Poll latency of every target (one histogram, no labels: bounded series).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.snmp_polls = Counter(
            "amoskys_snmp_polls_total",
            "Polls by target and outcome (ok, timeout, deadline, auth, resolve, error).",
            ["target", "outcome"],
            registry=r,
        )
        self.snmp_polls_skipped = Counter(
            "amoskys_snmp_polls_skipped_total",
            "Scheduled polls not made, by reason (backoff: the target is unreachable; late: a slot came too late).",
            ["target", "reason"],
            registry=r,
        )
        self.snmp_varbinds = Counter(
            "amoskys_snmp_varbinds_total",
            "Variable bindings received from the target.",
            ["target"],
            registry=r,
        )
        self.snmp_uptime = Gauge(
            "amoskys_snmp_target_uptime_seconds",
            "The target's sysUpTime at its last poll.",
            ["target"],
            registry=r,
        )
        self.snmp_interfaces = Gauge(
            "amoskys_snmp_target_interfaces",
            "Interfaces in the target's last sample.",
            ["target"],
            registry=r,
        )
        self.snmp_counter_resets = Counter(
            "amoskys_snmp_counter_resets_total",
            "Interfaces whose counters broke between two polls (agent restart, counter reset): no rate then.",
            ["target"],
            registry=r,
        )
        # per interface only with interface_metrics = "on", capped by max_interface_series
        self.snmp_interface_in_bps = Gauge(
            "amoskys_snmp_interface_in_bits_per_second",
            "Inbound rate of an interface over its last two polls.",
            ["target", "interface"],
            registry=r,
        )
        self.snmp_interface_out_bps = Gauge(
            "amoskys_snmp_interface_out_bits_per_second",
            "Outbound rate of an interface over its last two polls.",
            ["target", "interface"],
            registry=r,
        )
        self.snmp_interface_oper_up = Gauge(
            "amoskys_snmp_interface_oper_up",
            "1 when the interface's ifOperStatus is up(1), else 0.",
            ["target", "interface"],
            registry=r,
        )

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

        # -- discovery (label `how`: arp_sweep, arp_passive, dhcp, neighbour_table — a fixed list)
        self.discovery_arp_requests = Counter(
            "amoskys_discovery_arp_requests_total",
            "ARP requests the discovery sweep sent (retries included).",
            registry=r,
        )
        self.discovery_arp_replies = Counter(
            "amoskys_discovery_arp_replies_total",
            "ARP replies that answered a sweep's request.",
            registry=r,
        )
        self.discovery_sweep_duration = Gauge(
            "amoskys_discovery_sweep_duration_seconds",
            "Wall-clock time of the last ARP sweep of all configured subnets.",
            registry=r,
        )
        self.discovery_devices = Gauge(
            "amoskys_discovery_devices",
            "Devices in the discovery inventory that are present (not gone).",
            registry=r,
        )
        self.discovery_observations = Counter(
            "amoskys_discovery_observations_total",
            "Sightings of a device (MAC, maybe IP) fed to the inventory, by how it was seen.",
            ["how"],
            registry=r,
        )
        self.discovery_passive_dropped = Counter(
            "amoskys_discovery_passive_dropped_total",
            "Passive ARP/DHCP frames dropped because the discovery queue was full (intentional: bounded memory).",
            registry=r,
        )
        self.discovery_probe_connects = Counter(
            "amoskys_discovery_probe_connects_total",
            "TCP connects made by the opt-in service probe.",
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (call it off the event loop)."""
        return generate_latest(self.registry)
