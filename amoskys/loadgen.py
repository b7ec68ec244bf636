"""`amoskys loadgen`: a real publisher of well-formed synthetic events, to load and measure a bus.

It publishes as an identity enrolled with the ``loadgen`` role (``amoskys agents enroll NAME --role
loadgen``): the bus stores its events marked synthetic, and the dashboard badges them and leaves them
out of its totals. Events carry the current time and look like what an agent sends: processes, host
metrics, flow records with valid Community IDs, SNMP samples, devices, alerts and heartbeats — never an
AuditEvent (audit comes only from the appliance itself), and a LossReport only when asked for
(``losses=True``), so a load test never reads as lost data.

Unlike an agent, loadgen does not wait for a bus forever: when the channel is not ready within
``connect_timeout`` seconds, one TLS handshake with the bundle's certificates (amoskys.bus.diagnose)
says why, and a refusal by the bus (PERMISSION_DENIED, UNAUTHORIZED, INVALID) ends the run; both are
one-line BusErrors.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from amoskys.bus import diagnose as diag
from amoskys.bus.client import (
    AccessDeniedError,
    BusClient,
    MessageTooLargeError,
    PublisherIdentity,
    PublishRefusedError,
)
from amoskys.community_id import community_id_of
from amoskys.errors import BusError, PkiError, first_error
from amoskys.events import uuid7
from amoskys.proto import bus_pb2
from amoskys.proto import events_pb2 as ev

#: The identity role loadgen publishes as (pki.ROLES).
ROLE = "loadgen"
#: Seconds the one diagnostic handshake may take, at most.
DIAGNOSE_SECONDS = 5.0
#: Seconds between two progress updates on a terminal.
PROGRESS_SECONDS = 0.5

_FLOW_SRC, _FLOW_DST, _FLOW_DPORT = "192.0.2.10", "198.51.100.20", 443


def _bodies(now_ns: int, flow_sport: int, losses: bool) -> list[bytes]:
    """One serialized body-only Envelope per kind, stamped `now_ns`; a header is concatenated in front
    (protobuf merge). Built once per batch, so every batch carries its own time."""
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
                start_time_ns=now_ns,
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
                src_addr=_FLOW_SRC,
                dst_addr=_FLOW_DST,
                src_port=flow_sport,
                dst_port=_FLOW_DPORT,
                protocol=6,
                ip_version=4,
                forward=ev.FlowDirection(packets=10, octets=1500, tcp_flags=0x1B),
                reverse=ev.FlowDirection(packets=8, octets=9000, tcp_flags=0x1B),
                first_ts_ns=now_ns - 1_500_000_000,
                last_ts_ns=now_ns,
                final=True,
                end_reason=ev.END_OF_FLOW,
                community_id=community_id_of(_FLOW_SRC, _FLOW_DST, 6, flow_sport, _FLOW_DPORT),
                interface="loadgen0",
            )
        ),
        ev.Envelope(
            snmp=ev.SnmpSample(
                target="loadgen-switch",
                address="192.0.2.1:161",
                reachable=True,
                system=ev.SnmpSystem(descr="loadgen synthetic", name="sw", uptime_ticks=360_000),
                interfaces=[
                    ev.SnmpInterface(if_index=1, name="ge-0/0/1", in_octets=1, out_octets=2, hc_counters=True)
                ],
                poll_seconds=0.05,
            )
        ),
        ev.Envelope(
            device=ev.DeviceEvent(
                change=ev.DeviceEvent.SEEN,
                ip="192.0.2.77",
                mac=bytes.fromhex("020000000077"),
                vendor="loadgen",
                seen_by=["loadgen"],
                first_seen_ns=now_ns,
                last_seen_ns=now_ns,
            )
        ),
        ev.Envelope(
            alert=ev.Alert(rule="loadgen.synthetic", severity=ev.Alert.INFO, summary="loadgen synthetic")
        ),
        ev.Envelope(
            heartbeat=ev.Heartbeat(version="loadgen", hostname="loadgen", mode="agent", started_ns=now_ns)
        ),
    ]
    if losses:
        bodies.append(
            ev.Envelope(
                loss=ev.LossReport(
                    what="events",
                    where="loadgen",
                    count=0,
                    reason="synthetic",
                    window_start_ns=now_ns - 1_000_000_000,
                    window_end_ns=now_ns,
                )
            )
        )
    return [b.SerializeToString() for b in bodies]


class SyntheticEvents:
    """Makes serialized envelopes of every kind, round robin, stamped with real identity fields and
    the current time. `losses` adds LossReports to the round (left out by default)."""

    def __init__(
        self, source: str, *, losses: bool = False, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.source = source
        self.boot_id = str(uuid.uuid4())
        self.seq = 0
        self.losses = losses
        self._clock_ns = clock_ns
        self._batches = 0

    def make(self, n: int) -> tuple[list[str], list[bytes]]:
        ids, raws = [], []
        now = self._clock_ns()
        self._batches += 1
        bodies = _bodies(now, 40000 + self._batches % 20000, self.losses)
        for _ in range(n):
            self.seq += 1
            eid = uuid7()
            header = ev.Envelope(
                event_id=eid, source=self.source, boot_id=self.boot_id, source_seq=self.seq, ts_ns=now
            ).SerializeToString()
            ids.append(eid)
            raws.append(header + bodies[self.seq % len(bodies)])
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


class BusUnreachableError(BusError):
    """The channel to the bus was not ready within the connect timeout; `diagnosis` (one TLS
    handshake with the bundle's certificates) says why."""

    def __init__(self, diagnosis: diag.Diagnosis, timeout_seconds: float) -> None:
        super().__init__(f"loadgen: {_one_line(diagnosis.message)}")
        self.diagnosis = diagnosis
        self.timeout_seconds = timeout_seconds


class BusRefusedError(BusError):
    """The bus refused loadgen for good (PERMISSION_DENIED, an UNAUTHORIZED or INVALID ack, another
    final gRPC status); `cause` is the publisher's error."""

    def __init__(self, message: str, cause: BusError) -> None:
        super().__init__(f"loadgen: {_one_line(message)}")
        self.cause = cause


def _one_line(text: str) -> str:
    return " ".join(text.split())


def refusal(err: BusError, address: str, name: str) -> BusRefusedError:
    """The one-line error for a final answer of the bus."""
    if isinstance(err, AccessDeniedError):
        return BusRefusedError(
            f"bus {address} refuses identity {name!r}: PERMISSION_DENIED: {err.details or 'no reason given'} "
            "(enrol a loadgen identity on that appliance to publish there)",
            err,
        )
    if isinstance(err, MessageTooLargeError):
        return BusRefusedError(
            f"bus {address} refused a batch of {err.size:,} bytes as too large ({err.details}); use a "
            "smaller --batch",
            err,
        )
    if isinstance(err, PublishRefusedError):
        status = bus_pb2.AckStatus.Name(err.ack.status)
        hint = " (use a smaller --batch)" if "in one batch" in err.ack.message else ""
        return BusRefusedError(f"bus {address} refused a batch: {status}: {err.ack.message}{hint}", err)
    return BusRefusedError(str(err), err)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class _Progress:
    """One line on a terminal, rewritten in place (only given a TTY: see the CLI)."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self._last = 0.0
        self._shown = False

    def show(self, text: str, *, force: bool = False) -> None:
        if self.out is None:
            return
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        self.out.write(f"\r\x1b[2K{text}")
        self.out.flush()
        self._shown = True

    def done(self) -> None:
        if self.out is not None and self._shown:
            self.out.write("\r\x1b[2K")
            self.out.flush()


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
    connect_timeout: float = 10.0,
    bundle_dir: Path | None = None,
    losses: bool = False,
) -> LoadgenResult:
    """Publish `events` events in batches of `batch`, with up to `window` batches in flight (each
    chained to the one before it), at most `rate` events/s when > 0.

    Waits at most `connect_timeout` seconds for the channel; then raises BusUnreachableError with the
    diagnosis of one handshake (the bundle's certificate files are read from `bundle_dir`). A final
    refusal of the bus raises BusRefusedError. `progress` (a terminal) gets one line rewritten in place.
    """
    gen = SyntheticEvents(identity.name, losses=losses)
    sent = 0
    shown = _Progress(progress)
    slots = asyncio.Semaphore(window)

    async with BusClient(identity, bus, server_name=server_name) as client:
        shown.show(f"loadgen: connecting to {bus} ...", force=True)
        if not await client.wait_ready(connect_timeout):
            shown.done()
            raise BusUnreachableError(
                await _diagnose(identity, bus, server_name, bundle_dir, connect_timeout), connect_timeout
            )
        t0 = time.monotonic()

        async def one(ids: list[str], signed: bus_pb2.SignedBatch) -> None:
            try:
                ack = await client.send(signed, unary=unary)
            finally:
                slots.release()
            if acked_file is not None:
                bad = {r.index for r in ack.rejected}
                acked_file.write("".join(f"{eid}\n" for i, eid in enumerate(ids) if i not in bad))
                acked_file.flush()

        try:
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
                    st = client.stats
                    shown.show(
                        f"loadgen: {sent:,}/{events:,} sent, {st.accepted + st.duplicates:,} acked, "
                        f"{st.retries:,} retries"
                    )
        except BaseExceptionGroup as group:
            err = first_error(group, BusError)
            if err is None:
                raise
            raise refusal(err, bus, identity.name) from err
        finally:
            shown.done()
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


async def _diagnose(
    identity: PublisherIdentity, bus: str, server_name: str | None, bundle_dir: Path | None, waited: float
) -> diag.Diagnosis:
    """The diagnosis of one handshake after the channel was not ready within `waited` seconds."""
    if bundle_dir is None:
        return diag.Diagnosis("timeout", f"bus {bus}: not connected within {waited:g} s")
    found = await diag.diagnose(
        bus,
        ca_pem=identity.ca_cert,
        cert_file=bundle_dir / "client.crt",
        key_file=bundle_dir / "client.key",
        server_name=server_name,
        timeout_seconds=min(DIAGNOSE_SECONDS, max(waited, 1.0)),
    )
    if found.ok:  # the handshake works, yet gRPC did not connect in time
        return diag.Diagnosis(
            "timeout",
            f"bus {bus}: the TLS handshake with this bundle succeeds, but the bus did not accept a gRPC "
            f"connection within {waited:g} s (overloaded, or at its connection limit?)",
        )
    return found


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
    """The bundle's identity; PkiError when the bundle is unreadable or was not enrolled with the
    loadgen role (its events would be stored as real observations)."""
    identity = PublisherIdentity.from_bundle(path)
    try:
        role = json.loads((path / "bundle.json").read_text()).get("role", "")
    except (OSError, ValueError) as err:
        raise PkiError(f"enrolment bundle {path} is unreadable: {err}", path=str(path)) from err
    if role != ROLE:
        raise PkiError(
            f"loadgen: bundle {path} ({identity.name!r}) is enrolled with role {role or 'none'!r}, so its "
            f"events would be stored as real; enrol one for loadgen: amoskys agents enroll NAME --role {ROLE}",
            path=str(path),
        )
    return identity
