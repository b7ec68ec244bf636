"""`amoskys loadgen`: a real publisher of well-formed synthetic events of every kind.

Every event is labelled synthetic (`source` is the enrolled identity, bodies carry 'loadgen' in a
text field) so it can never be mistaken for an observation.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.events import uuid7
from amoskys.proto import bus_pb2
from amoskys.proto import events_pb2 as ev


def _bodies() -> list[bytes]:
    """One serialized body-only Envelope per kind; a header is concatenated in front (protobuf merge)."""
    bodies = [
        ev.Envelope(
            process=ev.ProcessEvent(
                kind=ev.ProcessEvent.EXEC,
                pid=4242,
                ppid=1,
                exe="/usr/bin/loadgen",
                argv=["loadgen", "--synthetic"],
                user="loadgen",
                uid=1000,
                start_time_ns=1,
            )
        ),
        ev.Envelope(
            host=ev.HostMetrics(
                hostname="loadgen",
                cpu_percent=12.5,
                cpu_percent_per_core=[10.0, 15.0],
                memory_total_bytes=4 << 30,
                memory_available_bytes=3 << 30,
                load1=0.5,
                load5=0.4,
                load15=0.3,
                uptime_seconds=3600,
            )
        ),
        ev.Envelope(
            flow=ev.FlowRecord(
                src_addr="192.0.2.10",
                dst_addr="198.51.100.20",
                src_port=40000,
                dst_port=443,
                protocol=6,
                ip_version=4,
                forward=ev.FlowDirection(packets=10, octets=1500, tcp_flags=0x1B),
                reverse=ev.FlowDirection(packets=8, octets=9000, tcp_flags=0x1B),
                first_ts_ns=1,
                last_ts_ns=2,
                final=True,
                end_reason=ev.END_OF_FLOW,
                community_id="1:loadgen",
                interface="loadgen0",
            )
        ),
        ev.Envelope(
            snmp=ev.SnmpSample(
                target="loadgen-switch",
                address="192.0.2.1:161",
                reachable=True,
                system=ev.SnmpSystem(descr="loadgen synthetic", name="sw", uptime_ticks=1),
                interfaces=[
                    ev.SnmpInterface(if_index=1, name="ge-0/0/1", in_octets=1, out_octets=2, hc_counters=True)
                ],
            )
        ),
        ev.Envelope(
            device=ev.DeviceEvent(
                change=ev.DeviceEvent.SEEN,
                ip="192.0.2.77",
                mac=bytes.fromhex("020000000077"),
                vendor="loadgen",
                seen_by=["loadgen"],
            )
        ),
        ev.Envelope(loss=ev.LossReport(what="events", where="loadgen", count=0, reason="synthetic")),
        ev.Envelope(
            alert=ev.Alert(rule="loadgen.synthetic", severity=ev.Alert.INFO, summary="loadgen synthetic")
        ),
        ev.Envelope(audit=ev.AuditEvent(actor="loadgen", action="synthetic", success=True)),
        ev.Envelope(heartbeat=ev.Heartbeat(version="loadgen", hostname="loadgen", mode="agent")),
    ]
    return [b.SerializeToString() for b in bodies]


class SyntheticEvents:
    """Makes serialized envelopes of every kind, round robin, stamped with real identity fields."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.boot_id = str(uuid.uuid4())
        self.seq = 0
        self._bodies = _bodies()

    def make(self, n: int) -> tuple[list[str], list[bytes]]:
        ids, raws = [], []
        now = time.time_ns()
        for _ in range(n):
            self.seq += 1
            eid = uuid7()
            header = ev.Envelope(
                event_id=eid, source=self.source, boot_id=self.boot_id, source_seq=self.seq, ts_ns=now
            ).SerializeToString()
            ids.append(eid)
            raws.append(header + self._bodies[self.seq % len(self._bodies)])
        return ids, raws


@dataclass
class LoadgenResult:
    sent: int
    acked: int
    duplicates: int
    rejected: int
    retries: int
    seconds: float
    ack_p50_ms: float
    ack_p99_ms: float

    @property
    def events_per_second(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        d = dict(self.__dict__)
        d["events_per_second"] = round(self.events_per_second, 1)
        return d


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run(
    identity: PublisherIdentity,
    bus: str,
    *,
    events: int,
    batch: int,
    rate: float = 0.0,
    window: int = 1,
    acked_file: TextIO | None = None,
    unary: bool = False,
    server_name: str | None = None,
    progress: TextIO | None = None,
) -> LoadgenResult:
    """Publish `events` events in batches of `batch`, with up to `window` batches in flight (each
    chained to the one before it), at most `rate` events/s when > 0."""
    gen = SyntheticEvents(identity.name)
    sent = 0
    t0 = time.monotonic()
    last_progress = t0
    slots = asyncio.Semaphore(window)

    async with BusClient(identity, bus, server_name=server_name) as client:

        async def one(ids: list[str], signed: bus_pb2.SignedBatch) -> None:
            try:
                ack = await client.send(signed, unary=unary)
            finally:
                slots.release()
            if acked_file is not None:
                bad = {r.index for r in ack.rejected}
                acked_file.write("".join(f"{eid}\n" for i, eid in enumerate(ids) if i not in bad))
                acked_file.flush()

        async with asyncio.TaskGroup() as tg:
            while sent < events:
                n = min(batch, events - sent)
                if rate > 0:
                    delay = t0 + sent / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await slots.acquire()
                ids, raws = gen.make(n)
                signed = client.sign_next(bus_pb2.RawEventList(events=raws).SerializeToString())
                tg.create_task(one(ids, signed))
                sent += n
                now = time.monotonic()
                if progress is not None and now - last_progress >= 1.0:
                    last_progress = now
                    progress.write(f"loadgen: {sent}/{events} events sent, {client.stats.retries} retries\n")
                    progress.flush()
        seconds = time.monotonic() - t0
        lat = [s * 1000 for s in client.stats.ack_seconds]
        st = client.stats
        return LoadgenResult(
            sent=sent,
            acked=st.accepted + st.duplicates,
            duplicates=st.duplicates,
            rejected=st.rejected,
            retries=st.retries,
            seconds=seconds,
            ack_p50_ms=_percentile(lat, 50),
            ack_p99_ms=_percentile(lat, 99),
        )


def format_summary(result: LoadgenResult, as_json: bool) -> str:
    if as_json:
        return json.dumps(result.as_dict())
    return (
        f"sent {result.sent}  acked {result.acked}  duplicates {result.duplicates}  rejected {result.rejected}  "
        f"retries {result.retries}\n"
        f"{result.events_per_second:,.0f} events/s over {result.seconds:.2f} s; "
        f"ack p50 {result.ack_p50_ms:.2f} ms, p99 {result.ack_p99_ms:.2f} ms"
    )


def load_identity(path: Path) -> PublisherIdentity:
    return PublisherIdentity.from_bundle(path)
