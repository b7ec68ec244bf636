"""The analyst's actions on alerts and rules: triage, suppress, unsuppress, switch a rule on or off.

Every action is audited as an AuditEvent of this appliance, committed before the call returns. Triage
is that AuditEvent itself (action TRIAGE_ACTION): the writer applies it to the alert's row, so the row
follows the log and the state is local to the box that shows it. Suppressions and rule switches are
appliance state (tables `alert_suppressions`, `detection_rules`), written through the writer's group
commit with their audit event, and in effect in the running detections when the call returns.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from amoskys.bus.core import Bus
from amoskys.control_service import Actor, BadRequestError
from amoskys.errors import AmoskysError
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2
from amoskys.store import Record, Store
from amoskys.store import alerts as rows
from amoskys.store.writer import StoreOp

if TYPE_CHECKING:
    from amoskys.detections.builtin.runner import BuiltinDetections
    from amoskys.detections.runtime import DetectionRuntime, RulesView

TRIAGE_STATES = rows.TRIAGE_STATES
#: Longest a suppression may last, and the longest note or reason kept.
MAX_SUPPRESSION_NS = 366 * 86_400 * 1_000_000_000
MAX_TEXT = 500
_FIELD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class UnknownAlertError(AmoskysError, LookupError):
    """No alert row has that id (store_seq)."""


class UnknownRuleError(AmoskysError, LookupError):
    """No loaded rule has that id."""


class UnknownSuppressionError(AmoskysError, LookupError):
    """No active suppression has that id."""


class AlertDesk:
    """The actions; `runtime` is None (or inactive) when no rules run here: triage and suppressions
    still work on the store, rule switches are refused (no rule is known)."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        stamper: EnvelopeStamper,
        *,
        runtime: DetectionRuntime | None = None,
        builtin: BuiltinDetections | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._bus = bus
        self._stamper = stamper
        self._runtime = runtime
        self._builtin = builtin  # the built-in detectors (amoskys.detections.builtin), when they run
        self._clock_ns = clock_ns

    def rules(self) -> RulesView:
        from amoskys.detections.runtime import EMPTY_VIEW

        return self._runtime.view if self._runtime is not None else EMPTY_VIEW

    async def _commit(self, audit: events_pb2.AuditEvent, ops: tuple[StoreOp, ...] = ()) -> None:
        """Store the audit event (and `ops`, in the same or a later group commit); return after the
        commit, and hand the event to the live fan-out as the bus does. Raises SubmitRefusedError when
        the store cannot take it now."""
        envelope = self._stamper.stamp(events_pb2.Envelope(audit=audit))
        record = Record.from_envelope(envelope)
        future = self._store.submit([record], local=True)
        if ops:
            await self._store.submit_ops(ops)
        await future
        self._bus.fanout.publish([record])

    async def triage(self, actor: Actor, alert: int, state: str, note: str = "") -> None:
        """Set the state of alert `alert` (its row's store_seq)."""
        if state not in TRIAGE_STATES:
            raise BadRequestError(
                f"unknown triage state {state!r} (expected one of: {', '.join(TRIAGE_STATES)})"
            )
        row = await self._store.read(partial(rows.alert_by_seq, store_seq=alert))
        if row is None:
            raise UnknownAlertError(f"no alert {alert}")
        detail = rows.json_text({"alert_id": row.alert_id, "state": state, "note": note[:MAX_TEXT]})
        await self._commit(
            events_pb2.AuditEvent(
                actor=actor.name[:64],
                action=rows.TRIAGE_ACTION,
                target=f"alert:{alert}",
                remote_addr=actor.remote,
                success=True,
                detail=detail,
            )
        )
        if state in rows.CLOSED_STATES and self._runtime is not None:
            await self._runtime.alert_closed(row.alert_id)
        if state in rows.CLOSED_STATES and self._builtin is not None:
            await self._builtin.alert_closed(row.alert_id)

    async def suppress(
        self,
        actor: Actor,
        *,
        rule_id: str,
        host: str,
        field: str,
        value: str,
        expires_ns: int,
        reason: str = "",
    ) -> str:
        """Keep matches of `rule_id` on `host` ('' = every host) whose `field` equals `value` from raising
        alerts until `expires_ns`; returns the suppression's id."""
        now = self._clock_ns()
        if not rule_id:
            raise BadRequestError("a suppression needs a rule id")
        if not field or not set(field) <= _FIELD_CHARS:
            raise BadRequestError(f"{field!r} is not a Sigma field name (e.g. CommandLine, Image, User)")
        if not value:
            raise BadRequestError("a suppression needs the field's value")
        if not now < expires_ns <= now + MAX_SUPPRESSION_NS:
            raise BadRequestError("a suppression's expiry must be in the future, at most 366 days ahead")
        s = rows.Suppression(
            uuid.uuid4().hex,
            rule_id,
            host,
            field,
            value,
            reason[:MAX_TEXT],
            actor.name[:64],
            now,
            expires_ns,
        )
        detail = rows.json_text(
            {
                "rule_id": rule_id,
                "host": host,
                "field": field,
                "value": value,
                "expires_ns": expires_ns,
                "reason": s.reason,
            }
        )
        await self._commit(
            events_pb2.AuditEvent(
                actor=actor.name[:64],
                action="alert_suppress",
                target=f"suppression:{s.id}",
                remote_addr=actor.remote,
                success=True,
                detail=detail,
            ),
            (rows.AddSuppression(s),),
        )
        if self._runtime is not None:  # in effect for what is evaluated from now on
            await self._runtime.refresh_state()
        if self._builtin is not None:
            await self._builtin.refresh_state()
        return s.id

    async def unsuppress(self, actor: Actor, suppression_id: str) -> None:
        existing = await self._store.read(partial(rows.suppression, sid=suppression_id))
        if existing is None or existing.removed_ns is not None:
            raise UnknownSuppressionError(f"no active suppression {suppression_id!r}")
        now = self._clock_ns()
        await self._commit(
            events_pb2.AuditEvent(
                actor=actor.name[:64],
                action="alert_unsuppress",
                target=f"suppression:{suppression_id}",
                remote_addr=actor.remote,
                success=True,
                detail=rows.json_text(
                    {"rule_id": existing.rule_id, "field": existing.field, "value": existing.value}
                ),
            ),
            (rows.RemoveSuppression(suppression_id, actor.name[:64], now),),
        )
        if self._runtime is not None:  # in effect for what is evaluated from now on
            await self._runtime.refresh_state()
        if self._builtin is not None:
            await self._builtin.refresh_state()

    async def suppressions(self, *, active: bool = True) -> list[rows.Suppression]:
        """Suppressions, newest first (only the active ones unless `active` is False)."""
        at = self._clock_ns() if active else None
        return await self._store.read(partial(rows.suppressions, active_at_ns=at))

    async def set_rule_enabled(self, actor: Actor, rule_id: str, enabled: bool) -> None:
        runtime, builtin = self._runtime, self._builtin
        is_builtin = builtin is not None and rule_id in builtin.rule_ids
        if not is_builtin and (runtime is None or not runtime.loaded_rule(rule_id)):
            raise UnknownRuleError(f"no loaded rule {rule_id!r}")
        await self._commit(
            events_pb2.AuditEvent(
                actor=actor.name[:64],
                action="rule_enabled" if enabled else "rule_disabled",
                target=f"rule:{rule_id}",
                remote_addr=actor.remote,
                success=True,
            ),
            (rows.SetRuleEnabled(rule_id, enabled, actor.name[:64], self._clock_ns()),),
        )
        if runtime is not None:
            await runtime.refresh_state()
        if builtin is not None:
            await builtin.refresh_state()
