"""Audit events for refused logins, aggregated: at most one stored event per account, address and
outcome a minute, however fast a guesser tries.

The first failed (or throttled) login for an (outcome, account, address) is audited at once, with
an empty detail; the ones after it in the next `window_s` seconds are only counted, and when the
window ends the count is audited as one event whose detail says ``"<n> more in <window_s> s"``. While
refusals keep coming, the next window opens at once, so a steady attack stores one event a minute per
key. Nothing counted is lost: `close` (at shutdown) audits every open count, and after it events pass
straight through. Successful logins are not this module's: they are audited each.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from amoskys.proto import events_pb2

AuditFn = Callable[[events_pb2.AuditEvent], Awaitable[None]]

WINDOW_S = 60
#: keys counted at once; past this, new keys are counted under one (outcome, "*", "*") key
MAX_KEYS = 10_000
_S = 1_000_000_000
_DETAIL = re.compile(r"(\d+) more in \d+ s")


def aggregated_count(event: events_pb2.AuditEvent) -> int:
    """How many refused logins one audit event stands for (1, or the count of an aggregated one)."""
    m = _DETAIL.fullmatch(event.detail)
    return int(m.group(1)) if m else 1


@dataclass(slots=True)
class _Window:
    ends_ns: int
    count: int = 0


class LoginAudit:
    """Aggregates refused-login audit events on their way to `audit`. Run `run` in a task (it audits
    each count when its window ends) and await `close` at shutdown; without `run`, counts are audited
    by the next `record` after their window ends, or by `close`."""

    def __init__(
        self, audit: AuditFn, *, clock_ns: Callable[[], int] = time.time_ns, window_s: int = WINDOW_S
    ) -> None:
        if window_s < 1:
            raise ValueError(f"login audit window must be at least 1 s (got {window_s})")
        self._audit = audit
        self._clock = clock_ns
        self.window_s = window_s
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._changed = asyncio.Event()
        self._closed = False

    async def record(self, action: str, actor: str, remote: str) -> None:
        """One refused login (`action`: login_failed or login_throttled) of `actor` from `remote`."""
        actor = actor[:64]
        if self._closed:
            await self._emit(action, actor, remote, "")
            return
        await self.flush_due()
        now = self._clock()
        key = (action, actor, remote)
        window = self._windows.get(key)
        if window is None and len(self._windows) >= MAX_KEYS:
            key = (action, "*", "*")
            window = self._windows.get(key)
        if window is not None:
            window.count += 1
            return
        self._windows[key] = _Window(now + self.window_s * _S)
        self._changed.set()
        await self._emit(action, actor, remote, "")

    async def flush_due(self) -> None:
        """Audit the count of every window that has ended; open the next window for a key that had
        refusals in it, forget a key that had none."""
        now = self._clock()
        for key, window in list(self._windows.items()):
            if window.ends_ns > now:
                continue
            if window.count == 0:
                del self._windows[key]
                continue
            count, window.count, window.ends_ns = window.count, 0, now + self.window_s * _S
            await self._emit(*key, f"{count} more in {self.window_s} s")

    async def close(self) -> None:
        """Audit every open count now; from here on, each event is audited as it comes."""
        self._closed = True
        windows, self._windows = self._windows, {}
        for key, window in windows.items():
            if window.count:
                await self._emit(*key, f"{window.count} more in {self.window_s} s")

    async def run(self) -> None:
        """Audit counts as their windows end, until cancelled."""
        while True:
            if not self._windows:
                self._changed.clear()
                await self._changed.wait()
                continue
            due = min(w.ends_ns for w in self._windows.values())
            await asyncio.sleep(max(0, due - self._clock()) / _S)
            await self.flush_due()

    @property
    def pending(self) -> int:
        """Refused logins counted but not yet audited."""
        return sum(w.count for w in self._windows.values())

    async def _emit(self, action: str, actor: str, remote: str, detail: str) -> None:
        await self._audit(
            events_pb2.AuditEvent(
                actor=actor, action=action, remote_addr=remote, success=False, detail=detail
            )
        )
