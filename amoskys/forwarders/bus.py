"""The bus sink: forwards the store to another appliance's EventBus as SignedBatches chained per sender.

An agent's outbox goes to its appliance this way; an appliance with a relay identity feeds a regional
one the same way (its agents' events included: the receiver records the relay as their origin).

Each batch is sealed before it is sent: its events are the stored envelopes as they are (a
RawEventList of their bytes), signed by `amoskys.bus.client.BusClient` (which chains it to the
previous batch), and its boundaries (store_seq range, kinds, prev_digest, digest) are committed to
the store's `outbox_batches` first. After a crash the unacked batches are rebuilt from those rows and
sent again byte for byte (Ed25519 is deterministic): the bus sees replays, never a fork. A new chain
(genesis) starts only with a new outbox — or when a sealed batch's rows cannot be rebuilt any more
(the hard cap dropped them), which is logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from amoskys.bus.client import (
    AccessDeniedError,
    BusClient,
    MessageTooLargeError,
    PublisherIdentity,
    TransientError,
)
from amoskys.collectors.clock import Clock
from amoskys.config import BusForwarderConfig
from amoskys.errors import BusError, ConfigError, PkiError
from amoskys.forwarders.base import Batch, Forwarder, SendResult, SendStatus
from amoskys.metrics import Metrics
from amoskys.pki.renewal import keep_renewed
from amoskys.pki.signatures import GENESIS_DIGEST, batch_digest, sign_batch
from amoskys.proto import bus_pb2
from amoskys.store import Store
from amoskys.store.outbox import DropBatches, Row, SaveBatch, SealedBatch

log = structlog.get_logger(__name__)

#: The sink's name: its cursor's key and its metrics' label.
NAME = "bus"
#: Most envelope bytes in one batch: half the receiver's default `[bus] max_message_bytes` (4 MiB), so
#: a sealed batch (re-sent as it is after a crash) is never too large to pass.
BATCH_BYTES = 2 * 1024 * 1024


def event_list(rows: Sequence[Row]) -> bytes:
    """The batch's `events` bytes: the stored envelopes, in store order, as they were received."""
    return bus_pb2.RawEventList(events=[row[2] for row in rows]).SerializeToString()


class BusSink:
    """Seals batches into the sender's chain and sends each as one PublishBatch call."""

    def __init__(
        self,
        client: BusClient,
        store: Store,
        *,
        kinds: frozenset[str] | None = None,
        name: str = NAME,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.name = name
        self.kinds = kinds
        self.client = client
        self._store = store
        self._clock_ns = clock_ns
        self._identity = client.identity

    def _signed(self, prev_digest: bytes, events: bytes) -> bus_pb2.SignedBatch:
        ident = self._identity
        return bus_pb2.SignedBatch(
            sender=ident.name,
            key_id=ident.key_id,
            events=events,
            prev_digest=prev_digest,
            signature=sign_batch(ident.key, ident.key_id, prev_digest, events),
        )

    async def resume(self, acked_seq: int) -> list[Batch]:
        """Rebuild the sealed, unacked batches; continue the chain from the newest sealed batch."""
        tip = GENESIS_DIGEST
        out: list[Batch] = []
        key_id = self._identity.key_id
        for sealed in await self._store.sealed_batches(self.name):
            if sealed.last_seq <= acked_seq:
                tip = sealed.digest  # acked: only the chain's tip
                continue
            rows = await self._store.outbox_range(
                first_seq=sealed.first_seq, last_seq=sealed.last_seq, kinds=sealed.kinds
            )
            events = event_list(rows)
            if (
                len(rows) != sealed.events
                or sealed.prev_digest != tip
                or batch_digest(key_id, sealed.prev_digest, events) != sealed.digest
            ):
                log.warning(
                    "forwarder_chain_restarted",
                    sink=self.name,
                    first_seq=sealed.first_seq,
                    last_seq=sealed.last_seq,
                    events_sealed=sealed.events,
                    events_found=len(rows),
                    why="a sealed batch cannot be rebuilt (its rows are gone, or the identity's key changed)",
                )
                await self._store.submit_outbox([DropBatches(self.name)])
                self.client.prev_digest = GENESIS_DIGEST
                return []
            out.append(Batch(rows, self._signed(sealed.prev_digest, events)))
            tip = sealed.digest
        self.client.prev_digest = tip
        return out

    async def seal(self, rows: Sequence[Row]) -> Batch:
        """Sign the rows as the chain's next batch and commit its boundaries before it is sent."""
        events = event_list(rows)
        prev = self.client.prev_digest
        signed = self.client.sign_next(events)
        sealed = SealedBatch(
            sink=self.name,
            first_seq=rows[0][0],
            last_seq=rows[-1][0],
            events=len(rows),
            kinds=self.kinds,
            prev_digest=prev,
            digest=self.client.prev_digest,
            sealed_ns=self._clock_ns(),
        )
        try:
            await self._store.submit_outbox([SaveBatch(sealed)])
        except BaseException:
            self.client.prev_digest = prev  # not recorded: the chain goes on from before it
            raise
        return Batch(rows, signed)

    async def send(self, batch: Batch) -> SendResult:
        try:
            ack = await self.client.call_once(batch.payload)
        except TransientError as err:
            return SendResult(
                SendStatus.RETRY,
                retry_after_seconds=err.retry_after_seconds,
                message=str(err),
                unreachable=err.retry_after_seconds == 0,
            )
        except AccessDeniedError as err:
            return SendResult(SendStatus.STOP, message=f"refused by the bus (revoked or not enrolled): {err}")
        except MessageTooLargeError as err:
            return SendResult(SendStatus.STOP, message=f"{err}: lower [forwarders.bus] batch_events")
        except BusError as err:
            return SendResult(SendStatus.RETRY, message=str(err), unreachable=True)
        if ack.status == bus_pb2.OK:
            reasons = sorted({r.reason for r in ack.rejected})
            return SendResult(
                SendStatus.OK,
                duplicates=ack.duplicates,
                rejected=len(ack.rejected),
                message=f"rejected: {', '.join(reasons)}" if reasons else "",
            )
        if ack.status == bus_pb2.RETRY:
            return SendResult(
                SendStatus.RETRY,
                retry_after_seconds=ack.backoff_hint_ms / 1000,
                message=f"RETRY: {ack.message}",
            )
        return SendResult(SendStatus.STOP, message=f"{bus_pb2.AckStatus.Name(ack.status)}: {ack.message}")

    async def close(self) -> None:
        await self.client.close()

    async def keep_renewed(self, bundle_dir: Path) -> None:
        """Renew the identity's certificate over the bus when a third of its life is left (checked
        hourly, until cancelled), and send with the new one from then on."""

        async def renewed(_: object) -> None:
            try:
                await self.client.reconnect(await PublisherIdentity.load(bundle_dir))
            except PkiError as err:  # the old certificate goes on until it expires; checked again hourly
                log.warning("forwarder_reconnect_failed", sink=self.name, error=str(err))

        await keep_renewed(bundle_dir, bus_address=self.client.address, on_renewed=renewed)


async def build_bus_forwarder(
    config: BusForwarderConfig,
    store: Store,
    metrics: Metrics,
    *,
    clock: Clock | None = None,
    backoff_cap_seconds: float = 5.0,
) -> Forwarder:
    """The bus forwarder of `[forwarders.bus]` (its identity bundle read off the loop). Raises
    ConfigError when the bundle cannot be read or names no address."""
    try:
        identity = await PublisherIdentity.load(Path(config.identity))
    except PkiError as err:
        raise ConfigError(
            f"forwarders.bus.identity: {err}", path="forwarders.bus.identity", value=config.identity
        ) from err
    address = config.address or identity.bus_address
    if not address:
        raise ConfigError(
            "forwarders.bus.address: not set, and the identity bundle names no bus address",
            path="forwarders.bus.address",
            value="",
        )
    client = BusClient(identity, address, call_timeout_seconds=config.call_timeout_seconds)
    sink = BusSink(client, store, kinds=frozenset(config.kinds) if config.kinds else None)
    bundle = Path(config.identity)
    return Forwarder(
        sink,
        store,
        metrics,
        batch_events=config.batch_events,
        batch_wait_ms=config.batch_wait_ms,
        max_in_flight=config.max_in_flight_batches,
        batch_bytes=BATCH_BYTES,
        backoff_cap_seconds=backoff_cap_seconds,
        clock=clock,
        detail={"address": address, "identity": identity.name},
        companion=lambda: sink.keep_renewed(bundle),
    )
