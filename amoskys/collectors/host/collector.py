"""HostCollector: a HostMetrics event and the host gauges every interval."""

from __future__ import annotations

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.host.config import HostConfig
from amoskys.collectors.host.metrics import HostMetrics
from amoskys.collectors.host.sample import HostSampler, Sample
from amoskys.collectors.workers import in_worker
from amoskys.proto import events_pb2


class HostCollector:
    """CPU, memory, swap, filesystems, disk and network I/O, load, uptime, users and temperatures.

    Reads run in a worker thread (a hung network mount blocks that thread, never the loop: the poll
    then skips ticks and warns). A part that fails is left out of the sample and logged once, with
    one more line when it reads again.
    """

    name = "host"
    Config = HostConfig
    Metrics = HostMetrics
    mode = "psutil"

    def __init__(self, config: HostConfig, ctx: CollectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self.sampler = HostSampler(config)
        self._failing: dict[str, str] = {}
        self._truncated: set[str] = set()

    async def run(self) -> None:
        await self.ctx.poll(self.config.interval_seconds, self.collect)

    async def collect(self) -> None:
        """Take one sample, export it as gauges and publish it."""
        sample = await in_worker(self.sampler.take)
        ts_ns = self.ctx.clock.time_ns()
        self._report(sample)
        self.ctx.metrics.component(HostMetrics).host.update(sample.metrics, ts_ns)
        envelope = events_pb2.Envelope(ts_ns=ts_ns)
        envelope.host.CopyFrom(sample.metrics)
        await self.ctx.publish(envelope)

    def _report(self, sample: Sample) -> None:
        """Log each failing part once when it starts failing and once when it reads again."""
        for part, error in sample.failures.items():
            if part not in self._failing:
                self.ctx.count_error(f"host {part}: {error}")
                self.ctx.log.warning("host_read_failed", part=part, error=error)
        for part in set(self._failing) - set(sample.failures):
            self.ctx.log.info("host_read_recovered", part=part)
        self._failing = dict(sample.failures)
        for kind, left_out in sample.truncated.items():
            if kind not in self._truncated:
                self._truncated.add(kind)
                self.ctx.log.warning(
                    "host_labels_truncated",
                    kind=kind,
                    left_out=left_out,
                    max_label_values=self.config.max_label_values,
                )
