"""The EventBus gRPC servicer: verify the batch (its sender, key and signature), ingest, answer an
honest ack. The call itself was admitted by the CallGate (amoskys.bus.gate) before it got here."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import grpc
import structlog
from google.protobuf.message import DecodeError

from amoskys.bus.auth import Authenticator, Denied, Identity
from amoskys.bus.chain import ChainTracker
from amoskys.bus.core import Bus, IngestResult
from amoskys.bus.via import ViaTracker
from amoskys.detections.builtin.chain_fork import fork_alert
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import bus_pb2, bus_pb2_grpc, events_pb2
from amoskys.store.state import ApplianceState, ChainAnchor

log = structlog.get_logger(__name__)

AlertSink = Callable[[events_pb2.Envelope], Awaitable[None]]
#: Quoted: grpc.aio.ServicerContext is generic only in grpc-stubs, not at runtime.
Context: TypeAlias = "grpc.aio.ServicerContext[bus_pb2.SignedBatch, bus_pb2.PublishAck]"


class EventBusService(bus_pb2_grpc.EventBusServicer):
    def __init__(
        self,
        bus: Bus,
        auth: Authenticator,
        chains: ChainTracker,
        metrics: Metrics,
        *,
        store_state: ApplianceState,
        max_events_per_batch: int,
        stamper: EnvelopeStamper,
    ) -> None:
        self.bus = bus
        self.auth = auth
        self.chains = chains
        self.metrics = metrics
        self.max_events = max_events_per_batch
        self.stamper = stamper
        self.state = store_state
        self._anchors_loaded: set[str] = set()
        self._unknown_logged: set[str] = set()
        self.via = ViaTracker()  # which sender each source arrives through (amoskys.bus.via)

    async def PublishBatch(self, request: bus_pb2.SignedBatch, context: Context) -> bus_pb2.PublishAck:
        return await self._handle(request, context, unary=False)

    async def Publish(self, request: bus_pb2.SignedBatch, context: Context) -> bus_pb2.PublishAck:
        return await self._handle(request, context, unary=True)

    async def _handle(
        self, batch: bus_pb2.SignedBatch, context: Context, *, unary: bool
    ) -> bus_pb2.PublishAck:
        t0 = time.perf_counter()
        ack = await self._judge(batch, context, unary=unary)
        self.metrics.bus_ack_seconds.observe(time.perf_counter() - t0)
        return ack

    def _outcome(self, status: int, reason: str) -> None:
        self.metrics.bus_batches.labels(status=bus_pb2.AckStatus.Name(status).lower(), reason=reason).inc()

    async def _judge(
        self, batch: bus_pb2.SignedBatch, context: Context, *, unary: bool
    ) -> bus_pb2.PublishAck:
        verdict = await self.auth.authorize(context.auth_context(), batch)
        if isinstance(verdict, Denied):
            self._outcome(bus_pb2.UNAUTHORIZED, verdict.reason)
            log.info(
                "bus_batch_unauthorized", reason=verdict.reason, sender=batch.sender[:64], peer=context.peer()
            )
            return bus_pb2.PublishAck(status=bus_pb2.UNAUTHORIZED, message=verdict.message)
        ident: Identity = verdict.identity
        try:
            raws = list(bus_pb2.RawEventList.FromString(batch.events).events)
        except DecodeError:
            self._outcome(bus_pb2.INVALID, "malformed_event_list")
            return bus_pb2.PublishAck(status=bus_pb2.INVALID, message="events is not a serialized EventList")
        if unary and len(raws) != 1:
            self._outcome(bus_pb2.INVALID, "unary_not_one_event")
            return bus_pb2.PublishAck(
                status=bus_pb2.INVALID, message=f"Publish takes exactly one event, got {len(raws)}"
            )
        if len(raws) > self.max_events:
            self._outcome(bus_pb2.INVALID, "too_many_events")
            return bus_pb2.PublishAck(
                status=bus_pb2.INVALID,
                message=f"{len(raws)} events in one batch; the limit is {self.max_events}",
            )
        self.metrics.bus_batch_events.observe(len(raws))
        digest = verdict.digest
        await self._load_anchor(ident.name)
        chain = await self.chains.judge(ident.name, batch.prev_digest, digest)
        expected = self.chains.successor(ident.name, batch.prev_digest) or b""
        anchor = None if chain == "replay" else ChainAnchor(ident.name, digest, time.time_ns())

        def taken() -> None:  # the store took the batch: later pipelined batches may chain to it
            if anchor is not None:
                self.chains.advance(ident.name, digest, batch.prev_digest)

        result: IngestResult = await self.bus.ingest(
            raws,
            sender=ident.name,
            relay=ident.role == "relay",
            synthetic=ident.role == "loadgen",
            anchor=anchor,
            on_submit=taken,
        )
        if result.status != bus_pb2.OK:
            self._outcome(result.status, result.reason)
            return result.to_ack()
        if chain == "fork":
            await self._fork_alert(ident.name, batch.prev_digest, expected)
        elif chain == "start":
            self.metrics.bus_chain_starts.inc()
            log.info("bus_chain_started", sender=ident.name)
        elif chain == "unknown":
            self.metrics.bus_chain_unknown.inc()
            if ident.name not in self._unknown_logged:  # once per sender: its next batches chain to this
                self._unknown_logged.add(ident.name)
                log.warning(
                    "bus_chain_predecessor_unknown",
                    sender=ident.name,
                    prev_digest=batch.prev_digest.hex()[:16],
                )
        if result.committed:
            for source, first in self.via.note(ident.name, {r.source for r in result.committed}):
                await self._via_alert(source, first, ident.name)
        self._outcome(bus_pb2.OK, "replay" if chain == "replay" else "")
        return result.to_ack(digest)

    async def _via_alert(self, source: str, first: str, second: str) -> None:
        log.warning("bus_source_via_two_senders", source=source, first_via=first, second_via=second)
        env = events_pb2.Envelope(
            alert=events_pb2.Alert(
                rule="bus.source_via_two_senders",
                severity=events_pb2.Alert.WARNING,
                summary=f"events of {source!r} arrive through two senders: {first!r} and {second!r}",
                attributes={"source": source, "first_via": first, "second_via": second},
            )
        )
        await self.bus.publish([self.stamper.stamp(env)])

    async def _load_anchor(self, sender: str) -> None:
        """The first batch of a sender since start: continue its chain from the stored anchor."""
        if sender in self._anchors_loaded:
            return
        stored = await self.state.get_chain_anchor(sender)
        if stored is not None and self.chains.anchor(sender) is None:
            self.chains.advance(sender, stored.digest)
        self._anchors_loaded.add(sender)

    async def _fork_alert(self, sender: str, got: bytes, expected: bytes) -> None:
        self.metrics.bus_chain_forks.inc()
        log.warning(
            "bus_chain_fork", sender=sender, prev_digest=got.hex()[:16], successor=expected.hex()[:16]
        )
        env = self.stamper.stamp(events_pb2.Envelope(alert=fork_alert(sender, got, expected)))
        env.alert.alert_id = env.event_id  # an alert of its own (a built-in rule's: amoskys.chain_fork)
        await self.bus.publish([env])
