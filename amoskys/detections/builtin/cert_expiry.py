"""A certificate within `cert_warning_days` of its end (or past it): the appliance's own (CA, bus
server, client identity) and every enrolled agent's kept copy — the files the Agents page and the
``amoskys_pki_cert_expiry_timestamp_seconds`` series read. Checked at start and every
`CHECK_SECONDS`; each certificate (by its end date) is reported once per run of the appliance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path

import structlog

from amoskys.config import CertExpiryConfig
from amoskys.detections.builtin.finding import Detector, Finding, builtin_rule
from amoskys.errors import PkiError
from amoskys.pki.issuance import cert_not_after

log = structlog.get_logger(__name__)

RULE = builtin_rule(
    "cert_expiry",
    "Certificate near expiry",
    "medium",
    description="A certificate of the appliance or of an enrolled agent ends within cert_warning_days.",
)
CHECK_SECONDS = 3600.0
_NS = 1_000_000_000
#: (host, label, path): whose certificate it is (the appliance, or the agent), what it is, where.
CertFile = tuple[str, str, Path]


class CertExpiry(Detector):
    name = "cert_expiry"
    rules = (RULE,)

    def __init__(
        self,
        config: CertExpiryConfig,
        certs: Callable[[], Sequence[CertFile]],
        *,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.warning_ns = config.cert_warning_days * 86_400 * _NS
        self.certs = certs
        self.check_ns = int(check_seconds * _NS)
        self._next = 0
        self._reported: set[tuple[str, str, int]] = set()

    def tick(self, now_ns: int) -> list[Finding]:
        """Reads certificate files (blocking): the runner calls it in its worker thread."""
        if now_ns < self._next:
            return []
        self._next = now_ns + self.check_ns
        out: list[Finding] = []
        for host, label, path in self.certs():
            try:
                end = cert_not_after(path)
            except (PkiError, OSError) as err:
                log.warning("cert_unreadable", cert=label, path=str(path), error=str(err))
                continue
            end_ns = int(end.timestamp() * _NS)
            left_ns = end_ns - now_ns
            if left_ns > self.warning_ns or (host, label, end_ns) in self._reported:
                continue
            self._reported.add((host, label, end_ns))
            days = left_ns / (86_400 * _NS)
            when = end.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            state = f"expired {when}" if left_ns <= 0 else f"expires {when} (in {days:.1f} days)"
            out.append(
                Finding(
                    RULE,
                    host,
                    now_ns,
                    f"certificate {label} of {host} {state}",
                    {
                        "certificate": label,
                        "path": str(path),
                        "not_after": end.isoformat(),
                        "days_left": f"{days:.1f}",
                    },
                    key=f"{label}@{end_ns}",
                )
            )
        return out
