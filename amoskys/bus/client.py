"""The publisher side of the EventBus: sign, chain, send, and retry until an honest answer.

Written once for every publisher (loadgen, agents, the gRPC forwarder): RETRY and transport errors
are retried with exponential backoff + jitter, honouring `backoff_hint_ms` (and, for
RESOURCE_EXHAUSTED, the trailing metadata ``amoskys-retry-after-ms``), re-sending the same bytes (so
the same event ids); UNAUTHORIZED and INVALID acks are final and raised as PublishRefusedError, and so
is PERMISSION_DENIED (an unknown or revoked identity) as AccessDeniedError.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.bus.gate import RETRY_AFTER_KEY
from amoskys.errors import BusError, PkiError
from amoskys.pki.identities import key_id, load_identity_key
from amoskys.pki.signatures import GENESIS_DIGEST, batch_digest, sign_batch
from amoskys.proto import bus_pb2, bus_pb2_grpc
from amoskys.retry import Backoff

RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)


class PublishRefusedError(BusError):
    """The bus refused a batch for good (UNAUTHORIZED or INVALID); retrying cannot help."""

    def __init__(self, ack: bus_pb2.PublishAck) -> None:
        super().__init__(f"{bus_pb2.AckStatus.Name(ack.status)}: {ack.message}")
        self.ack = ack


class AccessDeniedError(BusError):
    """The bus refuses this identity (PERMISSION_DENIED: not enrolled there, or revoked); retrying
    cannot help until an operator enrols it again."""

    def __init__(self, address: str, details: str) -> None:
        super().__init__(f"bus {address}: PERMISSION_DENIED: {details}")
        self.address = address
        self.details = details


class MessageTooLargeError(BusError):
    """The batch is larger than the bus (or this client) accepts in one message (RESOURCE_EXHAUSTED
    "message larger than max"): the same bytes can never pass, so it is final; send smaller batches."""

    def __init__(self, address: str, size: int, details: str) -> None:
        super().__init__(f"bus {address}: a batch of {size} bytes is too large: {details}")
        self.address = address
        self.size = size
        self.details = details


class TransientError(BusError):
    """One call failed in a way the same bytes may pass later (the bus unreachable, a deadline, its
    RESOURCE_EXHAUSTED): retry after at least `retry_after_seconds`."""

    def __init__(self, address: str, code: str, details: str, retry_after_seconds: float) -> None:
        super().__init__(f"bus {address}: {code}: {details}")
        self.address = address
        self.code = code
        self.details = details
        self.retry_after_seconds = retry_after_seconds


def too_large(err: grpc.aio.AioRpcError) -> bool:
    """Whether `err` is gRPC's own size check (either side), not the bus's retry-later answer."""
    return err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (err.details() or "")


def retry_after_seconds(err: grpc.aio.AioRpcError) -> float:
    """The wait a RESOURCE_EXHAUSTED answer asks for (trailing metadata RETRY_AFTER_KEY), else 0."""
    # grpc-stubs 1.53 types the entries as _Metadatum objects; grpcio's aio.Metadata yields pairs.
    trailing: Iterable[tuple[str, str | bytes]] = err.trailing_metadata() or ()  # type: ignore[assignment]
    for key, value in trailing:
        if key == RETRY_AFTER_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except (TypeError, ValueError):
                return 0.0
    return 0.0


@dataclass(frozen=True)
class PublisherIdentity:
    """What a publisher needs to reach a bus: its name, signing key and TLS material."""

    name: str
    key: Ed25519PrivateKey
    key_id: str
    client_cert: bytes
    client_key: bytes
    ca_cert: bytes
    bus_address: str = ""

    @classmethod
    async def load(cls, bundle_dir: Path) -> PublisherIdentity:
        """`from_bundle` for a running event loop: the bundle's files are read in a worker thread."""
        return await asyncio.to_thread(cls.from_bundle, bundle_dir)

    @classmethod
    def from_bundle(cls, bundle_dir: Path) -> PublisherIdentity:
        """Load an enrolment bundle written by `amoskys agents enroll` (blocking: before a loop runs,
        or `load` on one)."""
        meta_path = bundle_dir / "bundle.json"
        try:
            meta = json.loads(meta_path.read_text())
            key = load_identity_key(bundle_dir / "identity.ed25519")
            return cls(
                name=meta["name"],
                key=key,
                key_id=key_id(key.public_key()),
                client_cert=(bundle_dir / "client.crt").read_bytes(),
                client_key=(bundle_dir / "client.key").read_bytes(),
                ca_cert=(bundle_dir / "ca.crt").read_bytes(),
                bus_address=meta.get("bus_address", ""),
            )
        except (OSError, KeyError, ValueError) as err:
            raise PkiError(
                f"enrolment bundle {bundle_dir} is incomplete or unreadable: {err}", path=str(bundle_dir)
            ) from err


@dataclass
class ClientStats:
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0
    transport_errors: int = 0
    ack_seconds: list[float] = field(default_factory=list)


class BusClient:
    """One long-lived mTLS channel to a bus; publish() returns only on an OK ack."""

    def __init__(
        self,
        identity: PublisherIdentity,
        address: str,
        *,
        server_name: str | None = None,
        call_timeout_seconds: float = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        backoff: Backoff | None = None,
        prev_digest: bytes = GENESIS_DIGEST,
    ) -> None:
        self.identity = identity
        self.address = address
        self.prev_digest = prev_digest
        self.stats = ClientStats()
        self._timeout = call_timeout_seconds
        self._backoff = backoff or Backoff(base_seconds=0.05, cap_seconds=5.0)
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 60_000),
            # our own backoff decides when to retry: keep grpc's reconnect quick
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self._options = options
        self._channel, self._stub = self._connect(identity)

    def _connect(
        self, identity: PublisherIdentity
    ) -> tuple[grpc.aio.Channel, bus_pb2_grpc.EventBusAsyncStub]:
        creds = grpc.ssl_channel_credentials(
            root_certificates=identity.ca_cert,
            private_key=identity.client_key,
            certificate_chain=identity.client_cert,
        )
        channel = grpc.aio.secure_channel(self.address, creds, options=self._options)
        stub: bus_pb2_grpc.EventBusAsyncStub = bus_pb2_grpc.EventBusStub(channel)
        return channel, stub

    async def reconnect(self, identity: PublisherIdentity) -> None:
        """Use `identity`'s TLS material from the next call on (a renewed certificate): a new channel;
        calls in progress on the old one may finish within the call timeout before it closes (closing
        it at once would cancel them under their caller). The signing key and the chain position stay."""
        if identity.name != self.identity.name or identity.key_id != self.identity.key_id:
            raise PkiError(f"reconnect: {identity.name}/{identity.key_id} is not this publisher's identity")
        old = self._channel
        self.identity = identity
        self._channel, self._stub = self._connect(identity)
        await old.close(self._timeout)

    async def close(self) -> None:
        await self._channel.close(None)  # grace None: cancel calls in progress at once

    async def __aenter__(self) -> BusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout_seconds: float) -> bool:
        """Whether the channel is connected (TLS handshake done) within `timeout_seconds`. For a
        publisher that must not wait forever (loadgen); agents never call it, and the channel keeps
        trying either way."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_seconds)
        except TimeoutError:
            return False
        return True

    def sign(self, events: bytes) -> bus_pb2.SignedBatch:
        return bus_pb2.SignedBatch(
            sender=self.identity.name,
            key_id=self.identity.key_id,
            events=events,
            prev_digest=self.prev_digest,
            signature=sign_batch(self.identity.key, self.identity.key_id, self.prev_digest, events),
        )

    def sign_next(self, events: bytes) -> bus_pb2.SignedBatch:
        """Sign the next batch of the chain and advance the chain locally (for pipelining: the next
        batch may be signed and sent before this one is acked)."""
        batch = self.sign(events)
        self.prev_digest = batch_digest(self.identity.key_id, batch.prev_digest, events)
        return batch

    async def call_once(self, batch: bus_pb2.SignedBatch, *, unary: bool = False) -> bus_pb2.PublishAck:
        """One call, its ack as answered (OK, RETRY, ...): for a caller with its own retry loop (the
        forwarders). Raises TransientError when retrying may help, AccessDeniedError on
        PERMISSION_DENIED, MessageTooLargeError, and BusError for any other failure."""
        call = self._stub.Publish if unary else self._stub.PublishBatch
        try:
            ack: bus_pb2.PublishAck = await call(batch, timeout=self._timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise AccessDeniedError(self.address, err.details() or "") from err
            if too_large(err):
                raise MessageTooLargeError(self.address, batch.ByteSize(), err.details() or "") from err
            if err.code() not in RETRYABLE_CODES:
                raise BusError(f"bus {self.address}: {err.code().name}: {err.details()}") from err
            raise TransientError(
                self.address, err.code().name, err.details() or "", retry_after_seconds(err)
            ) from err
        return ack

    async def send(self, batch: bus_pb2.SignedBatch, *, unary: bool = False) -> bus_pb2.PublishAck:
        """Send one signed batch until it is acked OK; re-sends the same bytes on RETRY and transport
        errors (exponential backoff + jitter, never sooner than the server's hint). UNAUTHORIZED and
        INVALID raise PublishRefusedError, PERMISSION_DENIED AccessDeniedError, a batch above the
        message size limit MessageTooLargeError."""
        backoff = Backoff(self._backoff.base_seconds, self._backoff.cap_seconds)
        while True:
            t0 = time.perf_counter()
            try:
                ack = await self.call_once(batch, unary=unary)
            except TransientError as err:
                self.stats.transport_errors += 1
                self.stats.retries += 1
                await asyncio.sleep(backoff.next_delay(err.retry_after_seconds))
                continue
            if ack.status == bus_pb2.RETRY:
                self.stats.retries += 1
                await asyncio.sleep(backoff.next_delay(ack.backoff_hint_ms / 1000))
                continue
            if ack.status != bus_pb2.OK:
                raise PublishRefusedError(ack)
            self.stats.ack_seconds.append(time.perf_counter() - t0)
            self.stats.batches += 1
            self.stats.accepted += ack.accepted
            self.stats.duplicates += ack.duplicates
            self.stats.rejected += len(ack.rejected)
            return ack

    async def publish_raw(self, raw_events: Sequence[bytes], *, unary: bool = False) -> bus_pb2.PublishAck:
        """Publish serialized envelopes as one signed batch and wait for its OK ack."""
        return await self.send(
            self.sign_next(bus_pb2.RawEventList(events=raw_events).SerializeToString()), unary=unary
        )
