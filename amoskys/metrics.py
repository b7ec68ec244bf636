"""Our own Prometheus registry and every metric object the appliance exports.

Names follow ``amoskys_<subsystem>_<name>_<unit>``; counters end in ``_total``; label values are
bounded (kinds, reasons, collector names, never event ids or addresses).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import TypeVar, cast

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

S = TypeVar("S")

# `*_created` series double the exposition for no use on an appliance (Prometheus ignores them)
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Metrics:
    """Every metric of one appliance, on a registry of its own (tests build as many as they like)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._components: dict[Callable[[CollectorRegistry], object], object] = {}
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
        self.store_checkpoint_seconds = Histogram(
            "amoskys_store_checkpoint_seconds",
            "Time of one WAL checkpoint by the store's checkpointer (never inside a commit).",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # mode: passive, restart, truncate
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
        self.bus_synthetic_events = Counter(
            "amoskys_bus_synthetic_events_total",
            "The part of amoskys_bus_events_total sent by loadgen identities (synthetic), by outcome.",
            ["outcome"],
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
            "Batches answered RETRY because a source exceeded its quota (events or bytes; "
            "amoskys_bus_batches_total's reason says which: quota, quota_bytes).",
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
            "Batches whose predecessor already had another accepted successor (a fork: an Alert each).",
            registry=r,
        )
        self.bus_chain_starts = Counter(
            "amoskys_bus_chain_starts_total",
            "Batches that began a new chain (genesis prev_digest): a fresh or restarted publisher.",
            registry=r,
        )
        self.bus_chain_unknown = Counter(
            "amoskys_bus_chain_unknown_predecessor_total",
            "Batches naming a predecessor the bus has not seen (after the wait for pipelined batches).",
            registry=r,
        )
        self.bus_local_lost = Counter(
            "amoskys_bus_local_events_lost_total", "Local collector events whose commit failed.", registry=r
        )
        self.bus_subscriber_dropped = Counter(
            "amoskys_bus_subscriber_dropped_total",
            "Committed events a slow live subscriber dropped (its own oldest), by kind of subscriber (sse, rates).",
            ["subscriber"],
            registry=r,
        )
        self.bus_calls_refused = Counter(
            "amoskys_bus_calls_refused_total",
            "Bus calls refused at call start: no_identity, not_enrolled, revoked (PERMISSION_DENIED) "
            "or over_limit (RESOURCE_EXHAUSTED).",
            ["reason"],
            registry=r,
        )
        self.bus_calls_ended = Counter(
            "amoskys_bus_calls_ended_total",
            "Calls in progress (streams included) the bus ended because their identity was revoked or removed.",
            ["reason"],
            registry=r,
        )
        self.bus_calls_open = Gauge(
            "amoskys_bus_calls_open", "Bus calls in progress, open streams included.", registry=r
        )
        self.bus_enrolments = Counter(
            "amoskys_bus_enrolments_total",
            "Enrolment and renewal calls by outcome: enrolled, renewed, or why refused (malformed, "
            "unknown_token, reused, expired, wrong_name, conflict, bad_request, rate_limited, revoked).",
            ["outcome"],
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
            "1 for the collector's current state (running, stopped, backoff, degraded, disabled), 0 for the "
            "others.",
            ["collector", "state"],
            registry=r,
        )
        self.collector_failed = Gauge(
            "amoskys_collector_failed",
            "1 while a collector the config enables cannot run (its self-check or repeated crashes disabled "
            "it), else 0 (running, stopped by an operator, switched off, or with nothing configured).",
            ["collector"],
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

        # -- forwarders (amoskys.forwarders): sink is a configured sink's name (bounded)
        self.forwarder_lag_events = Gauge(
            "amoskys_forwarder_lag_events",
            "Events stored but not yet acked by the sink.",
            ["sink"],
            registry=r,
        )
        self.forwarder_lag_seconds = Gauge(
            "amoskys_forwarder_lag_seconds",
            "Age of the oldest event the sink has not acked yet (0 when it is caught up).",
            ["sink"],
            registry=r,
        )
        self.forwarder_sent = Counter(
            "amoskys_forwarder_sent_total", "Events the sink delivered (acked OK).", ["sink"], registry=r
        )
        self.forwarder_retries = Counter(
            "amoskys_forwarder_retries_total",
            "Sends retried after a RETRY answer or a transport error.",
            ["sink"],
            registry=r,
        )
        self.forwarder_duplicates = Counter(
            "amoskys_forwarder_duplicates_total",
            "Events the receiver already had (re-sent after a crash or a lost ack).",
            ["sink"],
            registry=r,
        )
        self.forwarder_rejected = Counter(
            "amoskys_forwarder_rejected_total", "Events the receiver rejected for good.", ["sink"], registry=r
        )

    def component(self, series: Callable[[CollectorRegistry], S]) -> S:
        """The series of one component (a collector's ``metrics.py`` class), built once on this registry.

        `series` is constructed as ``series(registry)``; later calls return the same object, so a
        component that restarts keeps its counters.
        """
        built = self._components.get(series)
        if built is None:
            made = self._components[series] = series(self.registry)
            return made
        return cast(S, built)  # stored under its own class just above: an S

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (a few ms for ~300 series: the web app's
        Exposition decides whether that runs on the loop)."""
        return generate_latest(self.registry)
