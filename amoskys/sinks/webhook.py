"""The webhook sink: each batch of alerts is one HTTP POST of a JSON object, signed with HMAC-SHA256.

Body: ``{"alerts": [ALERT, ...]}`` (amoskys.sinks.alerts.alert_json), UTF-8, oldest alert first. With a
`secret_file`, the request carries ``X-Amoskys-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>``
is HMAC-SHA256(secret, ``<t>.`` + body). The receiver recomputes it over the raw body, compares in
constant time, and refuses a `t` far from its clock (a replay window, 5 minutes suggested). Each
attempt is signed anew, so a batch re-sent after an outage carries a fresh `t`.

Answers: 2xx delivers the batch. 408, 425, 429, 5xx, a redirect, 401, 403, 404 and no answer at all
are retried (honouring Retry-After in seconds): they say the receiver is busy, down or misconfigured,
and the alerts wait in the store meanwhile. Any other 4xx (400, 413, 422 …) refuses this batch for
good: it is counted as rejected and the sink goes on with the next one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import structlog

from amoskys.config import WebhookSinkConfig
from amoskys.errors import ConfigError
from amoskys.forwarders.base import SendResult, SendStatus
from amoskys.sinks.alerts import AlertFilter, SinkAlert, alert_json
from amoskys.sinks.metrics import DELIVERED, REJECTED, SinkMetrics
from amoskys.sinks.sink import AlertSink

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Amoskys-Signature"
#: Answers that mean "not now" (busy, down, or set up wrong on the receiver's side): sent again.
_RETRIED = frozenset({401, 403, 404, 407, 408, 409, 421, 425, 429})


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, *, now: float, tolerance_seconds: float = 300) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance_seconds` of `now` (the
    receiver's side of `signature`, as the README describes it)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body).partition(",v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def read_secret(path: str, key: str) -> bytes:
    """The secret's bytes (surrounding whitespace stripped); ConfigError naming `key` when unreadable
    or empty. Blocking: call it off the loop."""
    try:
        secret = Path(path).expanduser().read_bytes().strip()
    except OSError as err:
        raise ConfigError(f"{key}: cannot read {path}: {err.strerror}", path=key, value=path) from err
    if not secret:
        raise ConfigError(f"{key}: {path} is empty (expected the shared secret)", path=key, value=path)
    return secret


def display_url(url: str) -> str:
    """The URL without path, query or credentials (a webhook URL's path often is a secret itself)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


@dataclass(frozen=True, slots=True)
class Request:
    body: bytes
    alerts: int


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), 3600.0)
    except ValueError:
        return 0.0  # absent, or an HTTP date: the backoff decides


class WebhookSink(AlertSink):
    """POSTs each batch of alerts to one URL."""

    def __init__(
        self,
        config: WebhookSinkConfig,
        client: httpx.AsyncClient,
        metrics: SinkMetrics,
        *,
        secret: bytes | None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(config.name, AlertFilter(config.min_level, config.rules), metrics)
        self._url = config.url
        self._where = display_url(config.url)
        self._timeout = config.timeout_seconds
        self._headers: Mapping[str, str] = {**config.headers, "Content-Type": "application/json"}
        self._secret = secret
        self._clock_ns = clock_ns
        self._client = client
        self._responses = {
            c: metrics.webhook_responses.labels(self.name, c) for c in ("2xx", "3xx", "4xx", "5xx", "error")
        }
        self._latency = metrics.webhook_request_seconds.labels(self.name)

    def render(self, alerts: list[SinkAlert]) -> Request:
        body = json.dumps(
            {"alerts": [alert_json(a) for a in alerts]}, ensure_ascii=False, separators=(",", ":")
        )
        return Request(body.encode(), len(alerts))

    async def deliver(self, payload: Request) -> SendResult:
        headers = dict(self._headers)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(
                self._secret, self._clock_ns() // 1_000_000_000, payload.body
            )
        started = time.monotonic()
        try:
            response = await self._client.post(
                self._url, content=payload.body, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as err:
            self._responses["error"].inc()
            what = "no answer" if isinstance(err, httpx.TimeoutException) else "cannot reach it"
            return SendResult(
                SendStatus.RETRY, message=f"webhook {self._where}: {what}: {err!r}", unreachable=True
            )
        self._latency.observe(time.monotonic() - started)
        status = response.status_code
        self._responses[f"{min(max(status // 100, 2), 5)}xx"].inc()
        if 200 <= status < 300:
            self.metrics.alerts.labels(self.name, DELIVERED).inc(payload.alerts)
            return SendResult(SendStatus.OK)
        message = f"webhook {self._where}: HTTP {status}"
        if 300 <= status < 400:
            location = display_url(response.headers.get("location", ""))
            message += f" (a redirect to {location}: set the sink's url to where it points)"
        if status < 400 or status >= 500 or status in _RETRIED:
            return SendResult(SendStatus.RETRY, retry_after_seconds=_retry_after(response), message=message)
        self.metrics.alerts.labels(self.name, REJECTED).inc(payload.alerts)
        return SendResult(SendStatus.OK, rejected=payload.alerts, message=message)

    async def close(self) -> None:
        await self._client.aclose()


async def build_webhook_sink(
    config: WebhookSinkConfig, metrics: SinkMetrics, *, key: str, clock_ns: Callable[[], int] = time.time_ns
) -> WebhookSink:
    """The sink of one `[[sinks.webhook]]` table (`key`: its path, e.g. ``sinks.webhook[0]``); the
    secret is read and the HTTP client (its TLS context) made in a worker thread."""
    secret = None
    if config.secret_file:
        secret = await asyncio.to_thread(read_secret, config.secret_file, f"{key}.secret_file")
    # trust_env: HTTPS_PROXY, NO_PROXY and SSL_CERT_FILE from the environment, read here (off the loop)
    client = await asyncio.to_thread(httpx.AsyncClient, follow_redirects=False, trust_env=True)
    if urlsplit(config.url).scheme == "http" and secret is None:
        log.warning(
            "webhook_unsigned_plain_http",
            sink=config.name,
            url=display_url(config.url),
            hint="set secret_file so the receiver can tell the alerts are ours",
        )
    return WebhookSink(config, client, metrics, secret=secret, clock_ns=clock_ns)
