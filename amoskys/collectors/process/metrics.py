"""The process collector's series: exec/exit capture, /proc enrichment, proc connector losses, snapshots and hashing."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProcessMetrics:
    """Every ``amoskys_process_*`` series, on the registry the appliance gives (``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
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
