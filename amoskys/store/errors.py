"""Errors raised by the store beyond the base classes of amoskys.errors."""

from __future__ import annotations

from typing import Literal

from amoskys.errors import StoreError, StoreFullError

RefusalReason = Literal["queue_full", "high_water", "closing", "error"]


class SubmitRefusedError(StoreFullError):
    """`Store.submit` cannot take the work now; nothing of it was stored.

    `reason` says why: ``queue_full`` (the writer queue holds `queue_max_events`), ``high_water``
    (the store is above its high-water mark and the publisher is remote), ``closing`` (the store is
    shutting down) or ``error`` (the last transaction failed and the writer is backing off).
    `backoff_hint_ms` is how long the publisher should wait before retrying.
    """

    def __init__(self, message: str, *, reason: RefusalReason, backoff_hint_ms: int) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason
        self.backoff_hint_ms = backoff_hint_ms


class StateConflictError(StoreError):
    """An appliance-state change conflicts with what is stored (a user or identity already exists).

    `kind` names the record type ('user', 'identity', 'session'), `key` its name.
    """

    def __init__(self, message: str, *, kind: str, key: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.key = key
