"""What the web layer reads and controls: one object handed to every route."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from amoskys.bus.core import Bus
from amoskys.config import Config
from amoskys.control_service import ControlService
from amoskys.health import Health
from amoskys.metrics import Metrics
from amoskys.store import Store
from amoskys.store.queries.reader import Reader
from amoskys.supervisor import Supervisor
from amoskys.web.auth import Auth

if TYPE_CHECKING:
    from amoskys.detections.desk import AlertDesk


@dataclass
class RateHistory:
    """Committed events per second over the last `size` seconds (for the overview chart); synthetic
    events (from loadgen identities) are counted apart, so the totals can leave them out."""

    size: int = 300
    points: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=300))
    synthetic_points: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=300))
    _second: int = 0
    _count: int = 0
    _synthetic: int = 0

    def add(self, n: int, now: float | None = None, *, synthetic: int = 0) -> None:
        """Count `n` committed events, `synthetic` of them synthetic."""
        sec = int(now if now is not None else time.time())
        if sec != self._second:
            if self._second:
                self.points.append((self._second, self._count))
                self.synthetic_points.append((self._second, self._synthetic))
            self._second, self._count, self._synthetic = sec, 0, 0
        self._count += n - synthetic
        self._synthetic += synthetic

    def series(self, now: float | None = None, *, synthetic: bool = False) -> list[tuple[int, int]]:
        """(second, events) of the last `size` whole seconds: observed events only, or with the
        synthetic ones added when `synthetic`."""
        self.add(0, now)
        if not synthetic:
            return list(self.points)
        return [(t, c + s) for (t, c), (_, s) in zip(self.points, self.synthetic_points, strict=True)]

    def synthetic_series(self, now: float | None = None) -> list[tuple[int, int]]:
        """(second, synthetic events) of the last `size` whole seconds."""
        self.add(0, now)
        return list(self.synthetic_points)


@dataclass
class WebContext:
    config: Config
    metrics: Metrics
    health: Health
    store: Store
    bus: Bus
    supervisor: Supervisor
    auth: Auth
    pki_dir: Path
    name: str
    reads: Reader  # the dashboard's read connection (bounded reads off the loop; sheds load)
    control: ControlService  # every audited state-changing action (collectors, agents, users, tokens)
    secure_cookies: bool = False
    rates: RateHistory = field(default_factory=RateHistory)
    clock_ns: Callable[[], int] = time.time_ns
    detections: AlertDesk | None = None  # alerts' triage and suppression, rule switches (audited)

    @property
    def cookie_name(self) -> str:
        return "__Host-amoskys_session" if self.secure_cookies else "amoskys_session"
