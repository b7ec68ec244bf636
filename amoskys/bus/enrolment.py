"""The Enrolment servicer: a one-time token buys a certificate (Enrol), an enrolled identity renews
its certificate (Renew). The endpoint's private keys never reach the appliance: it sends a CSR and its
Ed25519 public key with a proof of possession (amoskys.pki.csr).

Enrol is the one method of the bus served to callers without a client certificate (the CallGate lets
it through as an open method; BusServer serves it on the enrolment port, server-authenticated TLS).
So it is rate limited before any work: `ENROL_BURST` calls per address (an IPv6 /64 counts as one),
refilled one per `ENROL_REFILL_SECONDS`, and `GLOBAL_BURST` in all, refilled `GLOBAL_PER_SECOND` per
second; beyond, RESOURCE_EXHAUSTED with the gate's retry-after hint. Every outcome is counted in
``amoskys_bus_enrolments_total{outcome}`` and every refusal of a well-formed request is final
(PERMISSION_DENIED). Renew runs behind the gate like Publish (a revoked identity never gets here),
re-checks the identity, and is limited per identity.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
import structlog

from amoskys.bus.auth import Authenticator
from amoskys.bus.gate import RETRY_AFTER_KEY
from amoskys.errors import PkiError
from amoskys.metrics import Metrics
from amoskys.pki import csr as csrs
from amoskys.pki.enrolment import write_agent_cert
from amoskys.pki.issuance import LEAF_VALID_DAYS, cert_pem
from amoskys.pki.layout import ApplianceCredentials
from amoskys.pki.names import identity_uri, is_valid_name, peer_identity
from amoskys.pki.tokens import parse_token, secret_hash
from amoskys.proto import bus_pb2, bus_pb2_grpc, events_pb2
from amoskys.store.enrol_tokens import EnrolTokens, TokenRefusedError
from amoskys.store.state import ApplianceState

log = structlog.get_logger(__name__)

ENROL_METHOD = "/amoskys.v1.Enrolment/Enrol"
ENROL_BURST = 5
ENROL_REFILL_SECONDS = 6.0
GLOBAL_BURST = 60
GLOBAL_PER_SECOND = 1.0
RENEW_BURST = 3
RENEW_REFILL_SECONDS = 60.0
_MAX_BUCKETS = 10_000

AuditSink = Callable[[events_pb2.AuditEvent], Awaitable[None]]
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class _Buckets:
    """Token buckets by key (`burst` each, one more every `refill_seconds`), on an injectable clock."""

    def __init__(self, burst: float, refill_seconds: float, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.refill = refill_seconds
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when `key` may go now (one taken), else the seconds until it may."""
        now = self._clock()
        tokens, at = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) / self.refill)
        if tokens < 1:
            self._state[key] = (tokens, now)
            return (1 - tokens) * self.refill
        if len(self._state) >= _MAX_BUCKETS and key not in self._state:
            self._forget_full(now)
        self._state[key] = (tokens - 1, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        full = [k for k, (t, at) in self._state.items() if t + (now - at) / self.refill >= self.burst]
        for k in full:
            del self._state[k]


def peer_host(peer: str) -> str:
    """The rate-limit key of a grpc peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``): its address,
    an IPv6 address's /64."""
    kind, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class EnrolmentService(bus_pb2_grpc.EnrolmentServicer):
    def __init__(
        self,
        creds: ApplianceCredentials,
        state: ApplianceState,
        auth: Authenticator,
        metrics: Metrics,
        audit: AuditSink,
        *,
        valid_days: int = LEAF_VALID_DAYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.creds = creds
        self.tokens = EnrolTokens(state)
        self.auth = auth
        self.metrics = metrics
        self._audit = audit
        self.valid_days = valid_days
        self._per_address = _Buckets(ENROL_BURST, ENROL_REFILL_SECONDS, clock)
        self._global = _Buckets(GLOBAL_BURST, 1 / GLOBAL_PER_SECOND, clock)
        self._renewals = _Buckets(RENEW_BURST, RENEW_REFILL_SECONDS, clock)
        self._logged: set[str] = set()

    # ------------------------------------------------------------------ Enrol
    async def Enrol(self, request: bus_pb2.EnrolRequest, context: Context) -> bus_pb2.EnrolResponse:
        address = peer_host(context.peer())
        wait = self._per_address.take(address) or self._global.take("")
        if wait:
            await self._refuse(
                context, "rate_limited", grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many enrolment attempts; retry later", retry_after=wait,
            )  # fmt: skip
        try:
            token = parse_token(request.token)
        except PkiError as err:
            await self._refuse(context, "malformed", grpc.StatusCode.PERMISSION_DENIED, str(err))
        if request.name and not is_valid_name(request.name):
            await self._refuse(context, "bad_request", grpc.StatusCode.INVALID_ARGUMENT, "name is not valid")
        if len(request.identity_public_key) != 32 or not csrs.proof_valid(
            request.identity_public_key, csrs.ENROL_CONTEXT, request.csr, request.identity_signature
        ):
            await self._refuse(
                context, "bad_request", grpc.StatusCode.INVALID_ARGUMENT,
                "identity_signature does not verify with identity_public_key",
            )  # fmt: skip
        hashed = secret_hash(token.secret)
        try:
            row = await self.tokens.check(token.id, hashed, request.name or None)
            cert = await asyncio.to_thread(self._issue, request.csr, row.name)
            row = await self.tokens.redeem(
                token.id, hashed, request.name or None,
                public_key=request.identity_public_key, cert_serial=str(cert.serial_number),
            )  # fmt: skip
        except TokenRefusedError as err:
            await self._refuse(context, err.reason, grpc.StatusCode.PERMISSION_DENIED, err.message)
        except PkiError as err:
            await self._refuse(context, "bad_request", grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.auth.invalidate(row.name)  # it may have been looked up (and cached as unknown) before
        ca_pem = await self._kept(row.name, cert)
        self.metrics.bus_enrolments.labels(outcome="enrolled").inc()
        log.info("agent_enrolled_by_token", agent=row.name, role=row.role, token=token.id, peer=address)
        await self._audit(
            events_pb2.AuditEvent(
                actor=f"token:{token.id}",
                action="agent_enrolled",
                target=row.name,
                remote_addr=address,
                success=True,
                detail=f"{row.role}; certificate serial {cert.serial_number}; token of {row.created_by}",
            )
        )
        return bus_pb2.EnrolResponse(
            name=row.name,
            role=row.role,
            trust_domain=self.auth.trust_domain,
            certificate=cert_pem(cert),
            ca_certificate=ca_pem,
        )

    # ------------------------------------------------------------------ Renew
    async def Renew(self, request: bus_pb2.RenewRequest, context: Context) -> bus_pb2.RenewResponse:
        name = peer_identity(context.auth_context(), self.auth.trust_domain)
        ident = await self.auth.refresh(name) if name else None  # the store's word, not the cache's
        if ident is None or ident.revoked:
            why = f"identity {name!r} is revoked" if ident is not None else "no enrolled identity"
            await self._refuse(context, "revoked", grpc.StatusCode.PERMISSION_DENIED, why)
        wait = self._renewals.take(ident.name)
        if wait:
            await self._refuse(
                context, "rate_limited", grpc.StatusCode.RESOURCE_EXHAUSTED,
                "renewed too often; retry later", retry_after=wait,
            )  # fmt: skip
        if not csrs.proof_valid(
            ident.public_key, csrs.RENEW_CONTEXT, request.csr, request.identity_signature
        ):
            await self._refuse(
                context, "bad_request", grpc.StatusCode.INVALID_ARGUMENT,
                "identity_signature does not verify with the enrolled identity key",
            )  # fmt: skip
        try:
            cert = await asyncio.to_thread(self._issue, request.csr, ident.name)
        except PkiError as err:
            await self._refuse(context, "bad_request", grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if not await self.tokens.set_cert_serial(ident.name, str(cert.serial_number)):
            await self._refuse(context, "revoked", grpc.StatusCode.PERMISSION_DENIED, "identity is revoked")
        ca_pem = await self._kept(ident.name, cert)
        self.metrics.bus_enrolments.labels(outcome="renewed").inc()
        log.info("agent_cert_renewed", agent=ident.name, not_after=cert.not_valid_after_utc.isoformat())
        await self._audit(
            events_pb2.AuditEvent(
                actor=ident.name,
                action="agent_cert_renewed",
                target=ident.name,
                remote_addr=peer_host(context.peer()),
                success=True,
                detail=f"certificate serial {cert.serial_number}",
            )
        )
        return bus_pb2.RenewResponse(certificate=cert_pem(cert), ca_certificate=ca_pem)

    # ------------------------------------------------------------------ helpers
    def _issue(self, csr_der: bytes, name: str) -> Any:
        return csrs.issue_for_csr(
            self.creds,
            csr_der,
            uri=identity_uri(self.auth.trust_domain, name),
            common_name=name,
            valid_days=self.valid_days,
        )

    async def _kept(self, name: str, cert: Any) -> bytes:
        """Keep `cert` as the agent's (pages, metrics, `agents list`) and return the CA's PEM."""
        pki_dir = self.creds.ca_cert.parent

        def keep() -> bytes:
            write_agent_cert(pki_dir, name, cert_pem(cert))
            return self.creds.ca_cert.read_bytes()

        ca_pem = await asyncio.to_thread(keep)
        self.metrics.pki_cert_expiry.labels(cert=f"agent:{name}").set(cert.not_valid_after_utc.timestamp())
        return ca_pem

    async def _refuse(
        self,
        context: Context,
        outcome: str,
        code: grpc.StatusCode,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> NoReturn:
        self.metrics.bus_enrolments.labels(outcome=outcome).inc()
        if outcome not in self._logged:  # once per outcome: a guesser cannot fill the log
            self._logged.add(outcome)
            log.info("enrolment_refused", outcome=outcome, message=message, peer=context.peer())
        trailing = ((RETRY_AFTER_KEY, str(int(retry_after * 1000) + 1)),) if retry_after else ()
        await context.abort(code, message, trailing_metadata=trailing)
