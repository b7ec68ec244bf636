"""SnmpPollError: one poll of one target failed (an error for that device, never for the collector)."""

from __future__ import annotations

from typing import Literal

from amoskys.errors import CollectorError

#: Bounded reasons, used as the `outcome` label of amoskys_snmp_polls_total.
Reason = Literal["timeout", "deadline", "auth", "resolve", "error"]


class SnmpPollError(CollectorError):
    """Raised when polling a target fails: no response, deadline passed, wrong credentials, an agent
    error. The message names the target and its address (``snmp target 'core-sw1' (10.0.0.2:161): no
    response after 5 s``) and never a secret; `reason` is one of `Reason`."""

    def __init__(self, target: str, endpoint: str, message: str, *, reason: Reason, status: int = 0) -> None:
        super().__init__(f"snmp target {target!r} ({endpoint}): {message}")
        self.target = target
        self.endpoint = endpoint
        self.detail = message
        self.reason: Reason = reason
        self.status = status  # the agent's errorStatus, when it answered with one
