"""ProcessStats: the process collector's counts, kept as plain numbers and as Prometheus metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from amoskys.collectors.process.hashing import ExeHashes
from amoskys.collectors.process.metrics import ProcessMetrics
from amoskys.proto import events_pb2

_KINDS: dict[int, str] = {
    events_pb2.ProcessEvent.EXEC: "exec",
    events_pb2.ProcessEvent.EXIT: "exit",
    events_pb2.ProcessEvent.SNAPSHOT: "snapshot",
}
MODES = ("netlink", "polling")


class ProcessStats:
    """What the collector did, for /metrics, the standalone runner's summary and tests."""

    def __init__(self, metrics: ProcessMetrics) -> None:
        self.metrics = metrics
        self.published: Counter[tuple[str, str]] = Counter()  # (kind, via) → events
        self.enrichment: Counter[str] = Counter()  # complete, partial, gone
        self.unreadable: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.overruns = 0
        self.snapshots = 0
        self.last_snapshot_seconds = 0.0
        self._hashed_bytes = 0
        self._children: dict[tuple[str, ...], Any] = {}  # label values → metric child (labels() locks)

    def set_mode(self, mode: str) -> None:
        for m in MODES:
            self.metrics.process_mode.labels(m).set(1 if m == mode else 0)

    def count_published(self, envelopes: Iterable[events_pb2.Envelope], via: str) -> None:
        """Count published envelopes by kind and the fields they could not read (one metric update
        per label set and call: a Prometheus inc takes a lock)."""
        kinds: dict[int, int] = {}
        fields: dict[str, int] = {}
        for envelope in envelopes:
            if not envelope.HasField("process"):
                continue
            body = envelope.process
            kinds[body.kind] = kinds.get(body.kind, 0) + 1
            for name in body.unreadable:
                fields[name] = fields.get(name, 0) + 1
        for kind_number, n in kinds.items():
            kind = _KINDS.get(kind_number, "unknown")
            self.published[kind, via] += n
            self._child("events", kind, via).inc(n)
        for name, n in fields.items():
            self.unreadable[name] += n
            self._child("unreadable", name).inc(n)

    def count_enrichment(self, results: Counter[str]) -> None:
        """Exec events by what /proc held when read: ``complete`` (exe and argv), ``partial``, ``gone``."""
        for result, n in results.items():
            self.enrichment[result] += n
            self._child("enrichment", result).inc(n)
        self.metrics.process_enrichment_ratio.set(self.enrichment_ratio)

    def _child(self, metric: str, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            family = {
                "events": self.metrics.process_events,
                "unreadable": self.metrics.process_unreadable,
                "enrichment": self.metrics.process_exec_enrichment,
            }[metric]
            child = self._children[key] = family.labels(*labels)
        return child

    @property
    def enrichment_ratio(self) -> float:
        total = sum(self.enrichment.values())
        return self.enrichment["complete"] / total if total else 1.0

    def count_lost(self, count: int, reason: str) -> None:
        self.lost[reason] += count
        self.metrics.process_lost.labels(reason).inc(count)

    def count_overrun(self) -> None:
        self.overruns += 1
        self.metrics.process_overruns.inc()

    def count_snapshot(self, processes: int, seconds: float) -> None:
        self.snapshots += 1
        self.last_snapshot_seconds = seconds
        self.metrics.process_snapshot_processes.set(processes)
        self.metrics.process_snapshot_seconds.set(seconds)

    def count_hashes(self, hashes: ExeHashes) -> None:
        """Bring the hashing metrics up to date with the cache's own counts."""
        hashed = hashes.hashed_bytes
        if hashed == self._hashed_bytes:
            return  # nothing hashed since: the cache did not grow either
        self.metrics.process_hashed_bytes.inc(hashed - self._hashed_bytes)
        self._hashed_bytes = hashed
        self.metrics.process_hash_cache_entries.set(len(hashes))

    def summary(self) -> dict[str, object]:
        """A JSON-ready view of the counts."""
        return {
            "published": {f"{kind}/{via}": n for (kind, via), n in sorted(self.published.items())},
            "enrichment": dict(self.enrichment),
            "enrichment_ratio": round(self.enrichment_ratio, 4),
            "unreadable": dict(self.unreadable),
            "lost": dict(self.lost),
            "overruns": self.overruns,
            "snapshots": self.snapshots,
            "last_snapshot_seconds": round(self.last_snapshot_seconds, 4),
        }
