"""The web port's series: logins by outcome, passwords hashed, requests refused before a handler."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

LOGIN_OUTCOMES = ("ok", "failed", "throttled", "invalid")
REFUSAL_REASONS = ("body_too_large", "host_not_allowed")
#: a live stream (SSE) refused with 429 is counted under the config key whose limit it passed
SSE_REFUSAL_REASONS = ("max_sse_streams_per_session", "max_sse_streams")


class WebMetrics:
    """Every ``amoskys_web_*`` series, on the registry the appliance gives (``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter(
            "amoskys_web_logins_total",
            "Login attempts by outcome: ok, failed (wrong name or password), throttled (refused before "
            "hashing: too many failures or attempts in progress) or invalid (a field too long).",
            ["outcome"],
            registry=registry,
        )
        self.password_checks = Counter(
            "amoskys_web_password_checks_total",
            "Passwords hashed (scrypt) to check a login.",
            registry=registry,
        )
        self.requests_refused = Counter(
            "amoskys_web_requests_refused_total",
            "Requests refused before any handler ran, by reason (body_too_large: answered 413; "
            "host_not_allowed: a Host header missing or not in [web] allowed_hosts, answered 400).",
            ["reason"],
            registry=registry,
        )
        self.sse_streams_refused = Counter(
            "amoskys_web_sse_streams_refused_total",
            "Live event streams (SSE) refused with 429, by the limit passed: max_sse_streams_per_session "
            "or max_sse_streams (both in [web]).",
            ["reason"],
            registry=registry,
        )
        self.requests_shed = Counter(
            "amoskys_web_requests_shed_total",
            "Requests answered 503 with Retry-After because every read slot stayed taken for 100 ms "
            "([web] max_concurrent_reads).",
            registry=registry,
        )
        self.sse_streams_open = Gauge(
            "amoskys_web_sse_streams_open",
            "Live event streams (SSE) open now.",
            registry=registry,
        )
        for reason in SSE_REFUSAL_REASONS:
            self.sse_streams_refused.labels(reason)
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for reason in REFUSAL_REASONS:
            self.requests_refused.labels(reason)
