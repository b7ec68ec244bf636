"""Admission of every bus call: who may call at all, and how many calls one identity may hold.

A grpc.aio server interceptor sees the method and the metadata, never the peer's certificate, so the
gate wraps each method handler instead (`wrap`; BusServer applies it to every service it serves, the
gRPC health service included). At call start the wrapper reads ``context.auth_context()``:

- no identity of our trust domain, not enrolled, or revoked → PERMISSION_DENIED (final: a publisher
  does not retry it);
- the identity already has `max_calls_per_identity` calls in progress, open Health/Watch streams
  included → RESOURCE_EXHAUSTED with the trailing metadata ``amoskys-retry-after-ms`` (RETRY_AFTER_KEY);
- otherwise the call runs, counted against its identity until it ends.

An open method (`open_methods`: only the Enrolment service's Enrol, which buys a first certificate with
a one-time token) is admitted without an identity, all its calls counted together under OPEN_CALLS
against the same limit; everything else still needs an enrolled, unrevoked identity.

`revoke(name)` (the control socket's ``revoke`` command) re-reads the identity from the store and ends
its calls in progress with PERMISSION_DENIED before it returns. `run()` re-checks every identity with
calls in progress each `cache_seconds`, so a revocation made any other way ends its streams as well.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc
import structlog

from amoskys.bus.auth import Authenticator, Denied
from amoskys.errors import BusError, StoreError
from amoskys.metrics import Metrics

log = structlog.get_logger(__name__)

#: Trailing metadata of a RESOURCE_EXHAUSTED answer: milliseconds to wait before calling again.
RETRY_AFTER_KEY = "amoskys-retry-after-ms"
RETRY_AFTER_MS = 1000
#: (request_streaming, response_streaming) → the RpcMethodHandler field holding the behaviour.
_KINDS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}
_MAX_LOGGED = 10_000  # distinct refusals logged once each; forgotten all at once beyond this
#: The key the calls of open methods are counted under (no identity name contains '<').
OPEN_CALLS = "<open>"
#: How long `revoke` waits for the calls it cancelled to stop running before it answers anyway.
END_WAIT_SECONDS = 5.0

#: Quoted: grpc.aio.ServicerContext is generic only in grpc-stubs, not at runtime.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
#: A method behaviour as grpc.aio calls it: (request, context) → awaitable response.
Behaviour: TypeAlias = "Callable[[Any, Context], Awaitable[Any]]"


class NotRevokedError(BusError):
    """Asked to apply a revocation the store does not hold: `name` is enrolled and not revoked."""

    def __init__(self, name: str) -> None:
        super().__init__(f"identity {name!r} is enrolled and not revoked in the store: nothing to apply")
        self.name = name


class _Call:
    """One call in progress: whose it is, the task serving it, and why the gate ended it (if it did)."""

    __slots__ = ("ended", "name", "stopped", "task")

    def __init__(self, name: str, task: asyncio.Task[Any] | None) -> None:
        self.name = name
        self.task = task
        self.ended: Denied | None = None
        self.stopped: asyncio.Future[None] | None = None  # made when the gate ends the call


class CallGate:
    def __init__(
        self,
        auth: Authenticator,
        metrics: Metrics,
        *,
        max_calls_per_identity: int,
        open_methods: frozenset[str] = frozenset(),
    ) -> None:
        self.auth = auth
        self.open_methods = open_methods
        self.metrics = metrics
        self.max_calls = max_calls_per_identity
        self._calls: dict[str, set[_Call]] = {}
        self._logged: set[tuple[str, str]] = set()
        self._over: set[str] = set()  # identities told RESOURCE_EXHAUSTED since they were last below

    def open_calls(self, name: str) -> int:
        return len(self._calls.get(name, ()))

    # ------------------------------------------------------------------ wrapping
    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """`handler` with its behaviour admitted by this gate (a TypeError for a non-async behaviour)."""
        kind = _KINDS[(bool(handler.request_streaming), bool(handler.response_streaming))]
        behaviour = getattr(handler, kind)
        if not inspect.iscoroutinefunction(behaviour):
            if kind != "unary_unary":
                raise TypeError(
                    f"bus method {method}: a streaming handler must be `async def`, got {behaviour!r}"
                )
            behaviour = _in_thread(behaviour)  # e.g. the health service's unimplemented List
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        gated: grpc.RpcMethodHandler[Any, Any] = make(
            self._gated(method, behaviour),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        return gated

    def _gated(self, method: str, behaviour: Behaviour) -> Behaviour:
        @functools.wraps(behaviour)
        async def gated(request: Any, context: Context) -> Any:
            call = await self._admit(method, context)
            try:
                return await behaviour(request, context)
            except asyncio.CancelledError:
                why = call.ended
                if why is None:
                    raise  # the client went away, or the server stops
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # we cancelled it ourselves, to end the call with a status
            finally:
                self._release(call)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why.message)

        return gated

    # ------------------------------------------------------------------ admission
    async def _admit(self, method: str, context: Context) -> _Call:
        if method in self.open_methods:
            return await self._count(OPEN_CALLS, method, context)
        verdict = await self.auth.admit(context.auth_context())
        if isinstance(verdict, Denied):
            self.metrics.bus_calls_refused.labels(reason=verdict.reason).inc()
            self._log_once(
                "bus_call_refused", verdict.reason, verdict.message, method=method, peer=context.peer()
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, verdict.message)
        return await self._count(verdict.name, method, context)

    async def _count(self, name: str, method: str, context: Context) -> _Call:
        calls = self._calls.get(name)
        if calls is not None and len(calls) >= self.max_calls:
            self.metrics.bus_calls_refused.labels(reason="over_limit").inc()
            if name not in self._over:
                self._over.add(name)
                log.warning(
                    "bus_identity_over_call_limit", identity=name, limit=self.max_calls, method=method
                )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"identity {name!r} already has {len(calls)} calls in progress; the limit is "
                f"{self.max_calls} ([bus] max_calls_per_identity): retry after {RETRY_AFTER_MS} ms",
                trailing_metadata=((RETRY_AFTER_KEY, str(RETRY_AFTER_MS)),),
            )
        call = _Call(name, asyncio.current_task())
        self._calls.setdefault(name, set()).add(call)
        self.metrics.bus_calls_open.inc()
        return call

    def _release(self, call: _Call) -> None:
        calls = self._calls.get(call.name)
        if call.stopped is not None and not call.stopped.done():
            call.stopped.set_result(None)
        if calls is None or call not in calls:
            return
        calls.discard(call)
        self.metrics.bus_calls_open.dec()
        if not calls:
            del self._calls[call.name]
        if call.name in self._over and len(calls) < self.max_calls:
            self._over.discard(call.name)
            log.info("bus_identity_below_call_limit", identity=call.name, limit=self.max_calls)

    def _log_once(self, event: str, reason: str, message: str, **fields: Any) -> None:
        key = (reason, message)
        if key in self._logged:
            return
        if len(self._logged) >= _MAX_LOGGED:
            self._logged.clear()
        self._logged.add(key)
        log.info(event, reason=reason, message=message, **fields)

    # ------------------------------------------------------------------ revocation
    async def revoke(self, name: str) -> int:
        """Apply a revocation the store holds: re-read `name` now, refuse it from the next call on and
        end its calls in progress (PERMISSION_DENIED). Returns how many calls it ended.

        Raises NotRevokedError when the store has `name` enrolled and not revoked."""
        ident = await self.auth.refresh(name)
        if ident is not None and not ident.revoked:
            raise NotRevokedError(name)
        if ident is None:
            ended = self._end(name, Denied("not_enrolled", f"identity {name!r} is not enrolled"))
        else:
            ended = self._end(name, Denied("revoked", f"identity {name!r} is revoked"))
        if ended:  # let them stop (their status is on its way) before confirming
            await asyncio.wait([c.stopped for c in ended if c.stopped is not None], timeout=END_WAIT_SECONDS)
        return len(ended)

    def _end(self, name: str, why: Denied) -> list[_Call]:
        ended = []
        loop = asyncio.get_running_loop()
        for call in list(self._calls.get(name, ())):
            if call.ended is None and call.task is not None:
                call.ended = why
                call.stopped = loop.create_future()
                call.task.cancel()
                ended.append(call)
        if ended:
            self.metrics.bus_calls_ended.labels(reason=why.reason).inc(len(ended))
            log.info("bus_identity_calls_ended", identity=name, reason=why.reason, calls=len(ended))
        return ended

    async def run(self) -> None:
        """Every `cache_seconds`, end the calls of identities the store no longer admits (a revocation
        made without the control socket, e.g. from the dashboard)."""
        failing = False
        while True:
            await asyncio.sleep(self.auth.cache_seconds)
            try:
                for name in list(self._calls):
                    if name == OPEN_CALLS:
                        continue
                    ident = await self.auth.identity(name)
                    if ident is None:
                        self._end(name, Denied("not_enrolled", f"identity {name!r} is not enrolled"))
                    elif ident.revoked:
                        self._end(name, Denied("revoked", f"identity {name!r} is revoked"))
            except StoreError as err:
                if not failing:
                    log.error("bus_identity_recheck_failed", error=str(err))
                failing = True
                continue
            if failing:
                log.info("bus_identity_recheck_recovered")
                failing = False


def _in_thread(behaviour: Callable[[Any, Context], Any]) -> Behaviour:
    """A plain function as a coroutine, run off the loop (as grpc runs plain handlers)."""

    async def run(request: Any, context: Context) -> Any:
        return await asyncio.to_thread(behaviour, request, context)

    return run


def gated_handlers(
    gate: CallGate, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
) -> tuple[grpc.GenericRpcHandler[Any, Any], ...]:
    return tuple(_GatedGenericHandler(gate, h) for h in handlers)


# grpc's classes are not Generic at runtime (only grpc-stubs makes them so): no arguments here.
class _GatedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose method handlers are gated (each wrapped once, on its first call)."""

    def __init__(self, gate: CallGate, inner: grpc.GenericRpcHandler[Any, Any]) -> None:
        self._gate = gate
        self._inner = inner
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None  # unknown method: never cached, so the dict stays as small as the service
            wrapped = self._wrapped[method] = self._gate.wrap(method, handler)
        return wrapped
