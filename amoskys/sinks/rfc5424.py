"""RFC 5424 syslog messages of alerts (pure: alerts in, bytes out), and their framing on the wire.

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - alert [amoskys@32473 ...][amoskysAttributes@32473 ...] MSG``

- PRI: facility × 8 + severity, the severity from the alert's level (critical → 2 crit, high → 3 err,
  medium → 4 warning, low → 5 notice, informational → 6 info);
- TIMESTAMP: the alert's time, UTC, microseconds (RFC 5424 allows six fraction digits);
- HOSTNAME: the event's source (the box that raised the alert); PROCID: ``-``; MSGID: ``alert``;
- structured data under private SD-IDs with the RFC 5612 documentation enterprise number 32473:
  ``amoskys@32473`` (event_id, alert_id, rule, rule_id, title, level, host, count, and ``tags`` and
  ``evidence``: the tags and the evidence event ids, each list joined by commas) and
  ``amoskysAttributes@32473`` (the alert's attributes, names cut to 32 printable characters);
  PARAM-VALUEs escape ``"``, ``\\`` and ``]`` with a backslash;
- MSG: the alert's summary (else its title), UTF-8 without a BOM (RFC 5424's MSG-ANY).

Framing: TCP and TLS use octet counting (``LEN SP MSG``, RFC 6587 §3.4.1 and RFC 5425 §4.3); UDP sends
one message per datagram, cut to 2048 octets (what RFC 5426 says every receiver should take) and
ending in `` [truncated]``; when even the structured data does not fit, only its identifying
parameters (event_id, alert_id, rule_id, level) are kept.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from amoskys.proto import events_pb2
from amoskys.sinks.alerts import SinkAlert

SD_ID = "amoskys@32473"
SD_ID_ATTRIBUTES = "amoskysAttributes@32473"
UDP_MAX_OCTETS = 2048
TRUNCATED_MARKER = b" [truncated]"

FACILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
            "ftp", "ntp", "security", "console", "solaris-cron",
            "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
        )
    )
}  # fmt: skip
SEVERITIES = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
_HEADER_TOKEN = re.compile(r"[!-~]{1,255}")
_NOT_NAME = re.compile(r'[^!-~]|[=\]"]')


def escape_param(value: str) -> str:
    """A PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped with a backslash (RFC 5424 §6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def param_name(name: str) -> str:
    """An SD-NAME: 1..32 printable US-ASCII characters but ``=``, ``]``, ``"`` and space."""
    return _NOT_NAME.sub("_", name)[:32] or "_"


def sd_element(sd_id: str, params: Iterable[tuple[str, str]]) -> str:
    body = "".join(f' {name}="{escape_param(value)}"' for name, value in params)
    return f"[{sd_id}{body}]"


def timestamp(ts_ns: int) -> str:
    """An RFC 5424 TIMESTAMP in UTC with microseconds."""
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{rest // 1000:06d}Z"


def _params(alert: events_pb2.Alert, envelope: events_pb2.Envelope, level: str) -> list[tuple[str, str]]:
    params = [("event_id", envelope.event_id)]
    if alert.alert_id:
        params.append(("alert_id", alert.alert_id))
    for name in ("rule", "rule_id", "title"):
        if value := getattr(alert, name):
            params.append((name, value))
    params.append(("level", level))
    if alert.host:
        params.append(("host", alert.host))
    if alert.count:
        params.append(("count", str(alert.count)))
    if alert.tags:
        params.append(("tags", ",".join(alert.tags)))
    if alert.related_event_ids:
        params.append(("evidence", ",".join(alert.related_event_ids)))
    return params


def message(item: SinkAlert, *, facility: str, app_name: str, limit: int | None = None) -> tuple[bytes, bool]:
    """One alert's RFC 5424 message, and whether it had to be cut to `limit` octets."""
    env, alert, level = item.envelope, item.alert, item.level
    pri = FACILITIES[facility] * 8 + SEVERITIES[level]
    host = env.source if _HEADER_TOKEN.fullmatch(env.source) else "-"
    head = f"<{pri}>1 {timestamp(env.ts_ns)} {host} {app_name} - alert ".encode()
    sd = sd_element(SD_ID, _params(alert, env, level))
    if alert.attributes:
        sd += sd_element(SD_ID_ATTRIBUTES, ((param_name(k), v) for k, v in sorted(alert.attributes.items())))
    text = (alert.summary or alert.title).encode()
    whole = head + sd.encode() + (b" " + text if text else b"")
    if limit is None or len(whole) <= limit:
        return whole, False
    sd_bytes = sd.encode()
    if len(head) + len(sd_bytes) + len(TRUNCATED_MARKER) > limit:  # keep what identifies the alert
        keep = [
            (n, v) for n, v in _params(alert, env, level) if n in ("event_id", "alert_id", "rule_id", "level")
        ]
        sd_bytes = sd_element(SD_ID, keep).encode()
    room = max(0, limit - len(head) - len(sd_bytes) - 1 - len(TRUNCATED_MARKER))
    cut = text[:room].decode("utf-8", "ignore").encode()  # never half a character
    return head + sd_bytes + b" " + cut + TRUNCATED_MARKER, True


def octet_counted(msg: bytes) -> bytes:
    """`msg` framed for TCP and TLS: its length in octets, a space, the message (RFC 6587 §3.4.1)."""
    return b"%d %s" % (len(msg), msg)
