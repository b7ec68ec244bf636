"""Typed configuration: the structs, the TOML loader, and the env/flag overrides.

Precedence: flags > environment (AMOSKYS_DATA_DIR, AMOSKYS_LOG_LEVEL) > file > embedded defaults.
Every error names the key path, the value and what was expected.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, TypeVar

import msgspec

from amoskys.collectors import registry
from amoskys.collectors.base import CollectorConfig
from amoskys.errors import ConfigError
from amoskys.events import KINDS
from amoskys.nats.subjects import check_token

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "human", "json"]
Synchronous = Literal["full", "normal"]

C = TypeVar("C", bound=CollectorConfig)

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[V6]:PORT`` into (host, port); raise ValueError when malformed."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\[\]:]+):(\d{1,5})", value)
    if not m:
        raise ValueError(f"expected HOST:PORT (IPv6 as [ADDR]:PORT), got {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError(f"port must be 0..65535, got {port} in {value!r}")
    return host, port


def format_listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_listen(key: str, value: str) -> None:
    try:
        parse_listen(value)
    except ValueError as err:
        raise ValueError(f"`{key}`: {err}") from None


def is_wildcard_host(host: str) -> bool:
    """Whether `host` is an unspecified address (0.0.0.0, ::): bindable, but nothing one can dial."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def is_loopback_host(host: str) -> bool:
    """Whether `host` is reachable only from this machine (127.0.0.0/8, ::1, "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere counts as off loopback


def _check_advertise(key: str, value: str) -> None:
    """An address others dial: HOST:PORT with a specific host and a non-zero port."""
    _check_listen(key, value)
    host, port = parse_listen(value)
    if is_wildcard_host(host) or port == 0:
        raise ValueError(
            f"`{key}`: expected the HOST:PORT agents dial (a specific host, a port other than 0), got {value!r}"
        )


class ApplianceConfig(_Struct, frozen=True):
    name: str = ""
    data_dir: str = ""
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"

    def __post_init__(self) -> None:
        if self.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", self.name):
            raise ValueError(
                f"`name`: expected 1-63 letters, digits, '.', '_' or '-' starting with a letter or "
                f"digit, got {self.name!r}"
            )


class WebConfig(_Struct, frozen=True):
    listen: str = "127.0.0.1:8080"
    metrics_token_file: str = ""
    tls: Literal["off", "on"] = "off"
    session_idle_minutes: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)] = 30
    session_absolute_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 90)] = 12
    max_body_bytes: Annotated[int, msgspec.Meta(ge=8 * 1024, le=64 * 1024 * 1024)] = 1024 * 1024
    trusted_proxies: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_sse_streams_per_session: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 8
    max_sse_streams: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 64
    max_concurrent_reads: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8

    def __post_init__(self) -> None:
        _check_listen("listen", self.listen)
        for host in self.allowed_hosts:
            if not host or any(c in host for c in " /@") or (host != "*" and "*" in host):
                raise ValueError(
                    f'`allowed_hosts`: {host!r} is not a host name or address (or "*" for any host)'
                )
        if self.max_sse_streams < self.max_sse_streams_per_session:
            raise ValueError(
                f"`max_sse_streams` ({self.max_sse_streams}) must be at least "
                f"`max_sse_streams_per_session` ({self.max_sse_streams_per_session})"
            )
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy)  # an address is a network of one
            except ValueError:
                raise ValueError(
                    f"`trusted_proxies`: {proxy!r} is not an IP address or network (CIDR, host bits zero)"
                ) from None

    @property
    def plain_http_off_loopback(self) -> bool:
        """Whether passwords and session cookies would cross a network in clear (tls off, and a
        listen address other machines can reach; a wildcard counts)."""
        return self.tls == "off" and not is_loopback_host(parse_listen(self.listen)[0])


class BusConfig(_Struct, frozen=True):
    listen: str = "0.0.0.0:50051"
    trust_domain: str = "amoskys.local"
    server_dns_names: tuple[str, ...] = ("localhost",)
    server_ip_addresses: tuple[str, ...] = ("127.0.0.1", "::1")
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    max_events_per_batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    max_concurrent_rpcs: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    max_calls_per_identity: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 32
    quota_events_per_second: Annotated[int, msgspec.Meta(ge=1)] = 50_000
    quota_burst_events: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    max_event_bytes: Annotated[int, msgspec.Meta(ge=256, le=64 * 1024 * 1024)] = 1024 * 1024
    quota_bytes_per_second: Annotated[int, msgspec.Meta(ge=1024)] = 32 * 1024 * 1024
    quota_burst_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 128 * 1024 * 1024
    ack_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=600_000)] = 10_000
    max_connections: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    advertise_address: str = ""
    enrol_listen: str = ""
    silent_after_heartbeats: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3

    def __post_init__(self) -> None:
        _check_listen("listen", self.listen)
        if self.advertise_address:
            _check_advertise("advertise_address", self.advertise_address)
        if self.enrol_listen not in ("", "off"):
            _check_listen("enrol_listen", self.enrol_listen)
        # No error when max_event_bytes >= max_message_bytes: such an event could never arrive, so the
        # message limit is the event limit then (a config that lowered max_message_bytes stays valid).
        if self.quota_burst_bytes < self.max_message_bytes:
            raise ValueError(
                f"`quota_burst_bytes` ({self.quota_burst_bytes}) must be at least `max_message_bytes` "
                f"({self.max_message_bytes}), or the largest batch could never pass"
            )
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", self.trust_domain):
            raise ValueError(
                f"`trust_domain`: expected a lower-case DNS-like name, got {self.trust_domain!r}"
            )
        for ip in self.server_ip_addresses:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"`server_ip_addresses`: {ip!r} is not an IP address") from None


def enrol_listen_address(bus: BusConfig) -> tuple[str, int] | None:
    """Where the enrolment port listens: `[bus] enrol_listen`; when empty, the `[bus] listen` host with
    its port + 1 (0, any free port, when the bus port is 0); None when "off"."""
    if bus.enrol_listen == "off":
        return None
    if bus.enrol_listen:
        return parse_listen(bus.enrol_listen)
    host, port = parse_listen(bus.listen)
    return host, port + 1 if port else 0


class StoreConfig(_Struct, frozen=True):
    synchronous: Synchronous = "full"
    max_batch_events: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    max_batch_wait_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 5
    queue_max_events: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000
    retention_hours: Annotated[int, msgspec.Meta(ge=1)] = 168
    high_water_mb: PositiveInt = 2048
    hard_cap_mb: PositiveInt = 3072
    quick_check_max_mb: Annotated[int, msgspec.Meta(ge=0)] = 256
    series_minute_hours: Annotated[int, msgspec.Meta(ge=1, le=720)] = 48
    series_quarter_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    delete_acked_after_seconds: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if self.hard_cap_mb <= self.high_water_mb:
            raise ValueError(
                f"`hard_cap_mb` ({self.hard_cap_mb}) must be larger than `high_water_mb` ({self.high_water_mb})"
            )


class BusForwarderConfig(_Struct, frozen=True):
    """`[forwarders.bus]`: forward the store upward to another appliance's bus (amoskys.forwarders.bus)."""

    enabled: bool = False
    address: str = ""
    identity: str = ""
    batch_events: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    batch_wait_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 200
    max_in_flight_batches: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    call_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.address:
            _check_advertise("address", self.address)
        for kind in self.kinds:
            if kind not in KINDS:
                raise ValueError(f"`kinds`: {kind!r} is not an event kind (known: {', '.join(KINDS)})")
        if self.enabled and not self.identity:
            raise ValueError(
                "`identity`: required when the bus forwarder is enabled (an enrolment bundle dir)"
            )


class NatsForwarderConfig(_Struct, frozen=True):
    """`[forwarders.nats]`: publish every event to a NATS JetStream stream, exactly once
    (amoskys.forwarders.nats)."""

    enabled: bool = False
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "AMOSKYS"
    site: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    credentials: str = ""
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 2048
    ack_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5.0
    reconnect_wait_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 2.0
    stream_max_age_hours: Annotated[int, msgspec.Meta(ge=0)] = 168
    stream_max_mb: Annotated[int, msgspec.Meta(ge=0)] = 0
    duplicate_window_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 120.0
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.servers or any(not s.strip() or any(c.isspace() for c in s) for s in self.servers):
            raise ValueError("`servers`: expected one or more NATS URLs (nats://HOST:PORT, tls://HOST:PORT)")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", self.stream):
            raise ValueError(f"`stream`: expected letters, digits, '_' or '-', got {self.stream!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("`tls_cert`: a client certificate needs both tls_cert and tls_key")
        for kind in self.kinds:
            if kind not in KINDS:
                raise ValueError(f"`kinds`: {kind!r} is not an event kind (known: {', '.join(KINDS)})")
        if self.enabled:
            try:
                check_token("site", self.site)
            except ValueError as err:
                raise ValueError(f"`site`: {str(err).removeprefix('site: ')}") from err


class ForwardersConfig(_Struct, frozen=True):
    bus: BusForwarderConfig = BusForwarderConfig()
    nats: NatsForwarderConfig = NatsForwarderConfig()


#: The kinds a hub consumes unless told otherwise: a 2-core hub cannot take a fleet's raw flows and
#: process events, so those (and SNMP samples) come only when their subjects are listed.
HUB_DEFAULT_KINDS = ("alert", "loss", "heartbeat", "device", "audit", "host")
_NATS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")  # a JetStream stream or consumer name
_SUBJECT_TOKEN = re.compile(r"[^\s.*>]+|\*|>")


def _check_subject_filter(key: str, subject: str) -> None:
    """A subject filter in the fleet's space: ``amoskys.`` then four tokens (each a name or `*`), or
    ending in `>`."""
    tokens = subject.split(".")
    ok = (
        tokens[0] == "amoskys"
        and all(_SUBJECT_TOKEN.fullmatch(t) for t in tokens[1:])
        and ">" not in tokens[1:-1]
        and (len(tokens) == 5 or (tokens[-1] == ">" and 2 <= len(tokens) <= 5))
    )
    if not ok:
        raise ValueError(
            f"`{key}`: {subject!r} is not a subject filter of the fleet stream "
            "(amoskys.<site>.<box>.<source>.<kind>, each token a name or '*', or ending in '>')"
        )


class NatsSourceConfig(_Struct, frozen=True):
    """`[sources.nats]`: hub mode, consuming the fleet's JetStream stream into this store
    (amoskys.sources.nats)."""

    enabled: bool = False
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "AMOSKYS"
    durable: str = ""
    subjects: tuple[str, ...] = tuple(f"amoskys.*.*.*.{kind}" for kind in HUB_DEFAULT_KINDS)
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    credentials: str = ""
    batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    max_ack_pending: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000
    ack_wait_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0
    deny_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.servers or any(not s.strip() or any(c.isspace() for c in s) for s in self.servers):
            raise ValueError("`servers`: expected one or more NATS URLs (nats://HOST:PORT, tls://HOST:PORT)")
        if not _NATS_NAME.fullmatch(self.stream):
            raise ValueError(f"`stream`: expected letters, digits, '_' or '-', got {self.stream!r}")
        if self.durable and not _NATS_NAME.fullmatch(self.durable):
            raise ValueError(f"`durable`: expected letters, digits, '_' or '-', got {self.durable!r}")
        if not self.subjects:
            raise ValueError("`subjects`: expected at least one subject filter")
        for subject in self.subjects:
            _check_subject_filter("subjects", subject)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("`tls_cert`: a client certificate needs both tls_cert and tls_key")
        if self.max_ack_pending < self.batch:
            raise ValueError(
                f"`max_ack_pending` ({self.max_ack_pending}) must be at least `batch` ({self.batch})"
            )
        for name in self.deny_sources:
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"`deny_sources`: {name!r} is not a source or box name")

    def durable_name(self, appliance: str) -> str:
        """The durable consumer's name: `durable`, else ``amoskys-hub-<appliance>`` (characters a
        consumer name cannot hold become '_')."""
        return self.durable or "amoskys-hub-" + re.sub(r"[^A-Za-z0-9_-]", "_", appliance)


class SourcesConfig(_Struct, frozen=True):
    """`[sources]`: events taken from outside this appliance's own bus."""

    nats: NatsSourceConfig = NatsSourceConfig()


class _DetectorConfig(_Struct, frozen=True):
    """What every built-in detector has (amoskys.detections.builtin): whether it runs."""

    enabled: bool = True


class NewDeviceConfig(_DetectorConfig, frozen=True):
    """`[detections.new_device]`: a device discovery had never seen appears on the LAN."""


class MacChangeConfig(_DetectorConfig, frozen=True):
    """`[detections.mac_change]`: an IP address answered by another MAC (ARP spoofing, or a replaced device)."""


class PortScanConfig(_DetectorConfig, frozen=True):
    """`[detections.port_scan]`: one source opening flows to many ports or many hosts within a window."""

    ports: Annotated[int, msgspec.Meta(ge=2, le=65_536)] = 100
    hosts: Annotated[int, msgspec.Meta(ge=2, le=1_000_000)] = 50
    window_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0


class IocConfig(_DetectorConfig, frozen=True):
    """`[detections.ioc]`: flows to or from addresses of IOC lists (IP or CIDR, one per line)."""

    ioc_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for path in self.ioc_files:
            if not path.strip():
                raise ValueError("`ioc_files`: expected a file path, got an empty string")


class ExecPathConfig(_DetectorConfig, frozen=True):
    """`[detections.exec_path]`: a program run from a world-writable directory, or from a deleted file."""

    paths: tuple[str, ...] = ("/tmp", "/dev/shm")
    deleted: bool = True

    def __post_init__(self) -> None:
        for path in self.paths:
            if not path.startswith("/"):
                raise ValueError(f"`paths`: expected absolute directories, got {path!r}")


class SnmpHealthConfig(_DetectorConfig, frozen=True):
    """`[detections.snmp_health]`: an SNMP interface going down, an error-rate spike, a device unreachable."""

    error_rate_percent: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.0
    min_errors: Annotated[int, msgspec.Meta(ge=1)] = 10


class LossConfig(_DetectorConfig, frozen=True):
    """`[detections.loss]`: any LossReport (events, packets or flows lost, and why)."""


class SilentConfig(_DetectorConfig, frozen=True):
    """`[detections.silent]`: an agent or appliance silent for [bus] silent_after_heartbeats intervals."""


class CertExpiryConfig(_DetectorConfig, frozen=True):
    """`[detections.cert_expiry]`: a certificate of the appliance or of an enrolled agent near its end."""

    cert_warning_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30


class DetectionsConfig(_Struct, frozen=True):
    """`[detections]`: Sigma rules evaluated on the live stream, and the alerts they raise
    (amoskys.detections). Only the appliance runs them (an agent's events are evaluated by the
    appliance it forwards to)."""

    enabled: bool = True
    sigma_paths: tuple[str, ...] = ()
    reload_interval_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 5.0
    relayed: Literal["off", "on"] = "off"
    alert_window_seconds: Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400)] = 300
    # the built-in detectors (amoskys.detections.builtin)
    new_device: NewDeviceConfig = NewDeviceConfig()
    mac_change: MacChangeConfig = MacChangeConfig()
    port_scan: PortScanConfig = PortScanConfig()
    ioc: IocConfig = IocConfig()
    exec_path: ExecPathConfig = ExecPathConfig()
    snmp_health: SnmpHealthConfig = SnmpHealthConfig()
    loss: LossConfig = LossConfig()
    silent: SilentConfig = SilentConfig()
    cert_expiry: CertExpiryConfig = CertExpiryConfig()

    def __post_init__(self) -> None:
        for path in self.sigma_paths:
            if not path.strip():
                raise ValueError("`sigma_paths`: expected a rule file or directory, got an empty string")


#: Alert levels, lowest first (Sigma's words; amoskys.sinks.alerts maps the legacy severities onto them).
AlertLevel = Literal["informational", "low", "medium", "high", "critical"]
#: syslog facilities by their usual names (RFC 5424 §6.2.1 numbers them 0..23).
SyslogFacility = Literal[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
]  # fmt: skip
_SINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
#: The forwarders' cursor names: a sink must not share a cursor with one of them.
_FORWARDER_NAMES = ("bus", "nats")
_SIGNATURE_HEADER = "x-amoskys-signature"


class _AlertSinkConfig(_Struct, frozen=True):
    """What every alert sink has: its name (its cursor's key and its metrics' label) and its filter."""

    name: str
    min_level: AlertLevel = "informational"
    rules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _SINK_NAME.fullmatch(self.name):
            raise ValueError(
                f"`name`: expected 1-63 letters, digits, '.', '_' or '-' starting with a letter or digit, "
                f"got {self.name!r}"
            )
        if self.name in _FORWARDER_NAMES:
            raise ValueError(f"`name`: {self.name!r} is the name of a forwarder's cursor: choose another")
        for rule in self.rules:
            if not rule.strip():
                raise ValueError("`rules`: expected rule ids or names (glob patterns), got an empty string")


class WebhookSinkConfig(_AlertSinkConfig, frozen=True, kw_only=True):
    """`[[sinks.webhook]]`: POST alerts as JSON, signed with HMAC-SHA256 (amoskys.sinks.webhook)."""

    url: str
    secret_file: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        m = re.fullmatch(r"(https?)://([^/?#\s]+)[^\s]*", self.url)
        if not m or m.group(2).startswith((":", "@")):
            raise ValueError(f"`url`: expected an http:// or https:// URL with a host, got {self.url!r}")
        for header in self.headers:
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", header):
                raise ValueError(f"`headers`: {header!r} is not an HTTP header name")
            if header.lower() in (_SIGNATURE_HEADER, "content-type", "content-length", "host"):
                raise ValueError(f"`headers`: {header!r} is set by the sink itself")
        for header, value in self.headers.items():
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"`headers`: the value of {header!r} holds a line break or NUL")


class SyslogSinkConfig(_AlertSinkConfig, frozen=True, kw_only=True):
    """`[[sinks.syslog]]`: RFC 5424 messages over UDP, TCP (RFC 6587) or TLS (RFC 5425)
    (amoskys.sinks.syslog)."""

    address: str
    transport: Literal["udp", "tcp", "tls"] = "tcp"
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    facility: SyslogFacility = "local0"
    app_name: str = "amoskys"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_advertise("address", self.address)
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("`cert_file`: a client certificate needs both cert_file and key_file")
        if self.transport != "tls" and (self.ca_file or self.cert_file):
            raise ValueError(
                f'`transport`: ca_file, cert_file and key_file need transport = "tls", got {self.transport!r}'
            )
        if not re.fullmatch(r"[!-~]{1,48}", self.app_name):
            raise ValueError(
                f"`app_name`: expected 1-48 printable ASCII characters without spaces, got {self.app_name!r}"
            )


class EcsFileSinkConfig(_AlertSinkConfig, frozen=True, kw_only=True):
    """`[[sinks.ecs_file]]`: alerts appended as Elastic Common Schema JSON Lines, rotated by size
    (amoskys.sinks.ecs_file)."""

    path: str
    max_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 100 * 1024 * 1024
    keep: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path.strip():
            raise ValueError("`path`: expected a file path, got an empty string")


class SinksConfig(_Struct, frozen=True):
    """`[sinks]`: where alerts are delivered, each sink an array of tables (amoskys.sinks). Only the
    appliance has sinks (an agent raises no alerts)."""

    webhook: tuple[WebhookSinkConfig, ...] = ()
    syslog: tuple[SyslogSinkConfig, ...] = ()
    ecs_file: tuple[EcsFileSinkConfig, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for kind in ("webhook", "syslog", "ecs_file"):
            sinks: tuple[_AlertSinkConfig, ...] = getattr(self, kind)
            for i, sink in enumerate(sinks):
                key = f"{kind}[{i}].name"
                if sink.name in seen:
                    raise ValueError(f"`{key}`: {sink.name!r} is already the name of sinks.{seen[sink.name]}")
                seen[sink.name] = key.removesuffix(".name")

    def all(self) -> tuple[_AlertSinkConfig, ...]:
        """Every configured sink, webhooks first, then syslog, then ECS files."""
        return (*self.webhook, *self.syslog, *self.ecs_file)


class CollectorsPolicy(_Struct, frozen=True):
    """The supervisor's restart policy; `CollectorsConfig` adds one section per registered collector."""

    restart_initial_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0
    restart_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 300.0
    healthy_after_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0
    max_fast_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5

    def __post_init__(self) -> None:
        if self.restart_max_seconds < self.restart_initial_seconds:
            raise ValueError(
                f"`restart_max_seconds` ({self.restart_max_seconds}) must not be smaller than "
                f"`restart_initial_seconds` ({self.restart_initial_seconds})"
            )

    def section(self, config_type: type[C]) -> C:
        """The section of the collector whose config struct is `config_type`, typed by it."""
        for spec in registry.discover().values():
            if spec.config_type is config_type:
                section: C = getattr(self, spec.name)
                return section
        raise LookupError(f"no registered collector has the config struct {config_type.__name__}")

    def section_named(self, name: str) -> CollectorConfig:
        """The section of the collector called `name` (a registered one)."""
        section: CollectorConfig = getattr(self, name)
        return section


def _compose_collectors() -> type[msgspec.Struct]:
    """`[collectors]`: the policy, then a table per registered collector, converted with its own struct."""
    fields = [(spec.name, spec.config_type, spec.config_type()) for spec in registry.discover().values()]
    return msgspec.defstruct(
        "CollectorsConfig",
        fields,
        bases=(CollectorsPolicy,),
        module=__name__,
        frozen=True,
        forbid_unknown_fields=True,
        kw_only=True,
    )


if TYPE_CHECKING:
    # Its per-collector fields exist only at run time: the type checker sees the policy and reaches the
    # sections through section() and section_named().
    CollectorsConfig: TypeAlias = CollectorsPolicy
else:
    CollectorsConfig = _compose_collectors()


class Config(_Struct, frozen=True):
    appliance: ApplianceConfig = ApplianceConfig()
    web: WebConfig = WebConfig()
    bus: BusConfig = BusConfig()
    store: StoreConfig = StoreConfig()
    forwarders: ForwardersConfig = ForwardersConfig()
    sources: SourcesConfig = SourcesConfig()
    detections: DetectionsConfig = DetectionsConfig()
    sinks: SinksConfig = SinksConfig()
    collectors: CollectorsConfig = CollectorsConfig()


_PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]")


def _lookup(data: Any, path: str) -> tuple[bool, Any]:
    """Follow a msgspec error path like ``$.bus.server_ip_addresses[1]`` through raw TOML data."""
    cur = data
    for key, index in _PATH_PART.findall(path.removeprefix("$")):
        try:
            cur = cur[key] if key else cur[int(index)]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, cur


def _choices(path: str) -> tuple[str, ...]:
    """The allowed values of the Literal-typed field at a config path, if it is one."""
    tp: Any = Config
    for key, index in _PATH_PART.findall(path.removeprefix("$")):
        if index:  # an element of an array of tables (tuple[Struct, ...])
            tp = next(iter(typing.get_args(tp)), None)
            continue
        hints = typing.get_type_hints(tp, include_extras=True) if isinstance(tp, type) else {}
        tp = hints.get(key)
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def _validation_error(err: msgspec.ValidationError, data: Mapping[str, Any], source: str) -> ConfigError:
    text = str(err)
    what, _, path = text.rpartition(" - at `")
    path = path.rstrip("`") if what else "$"
    what = what or text
    m = re.fullmatch(r"`(\w+(?:\[\d+\]\.\w+)*)`: (.*)", what, flags=re.S)
    if m:  # raised by a __post_init__ check: it names the key
        path, what = f"{path}.{m.group(1)}", m.group(2)
    m = re.fullmatch(r"Object contains unknown field `(\w+)`", what)
    if m:
        what = "unknown key"
        if path == "$.collectors":
            what = f"unknown collector (known: {', '.join(registry.names())})"
        path = f"{path}.{m.group(1)}"
    found, value = _lookup(data, path)
    if what.startswith("Invalid enum value"):
        choices = _choices(path)
        what = f"expected one of {', '.join(map(repr, choices))}" if choices else what
    where = f"{source}: " if source else ""
    key = path.removeprefix("$.") if path != "$" else "(top level)"
    unknown = what == "unknown key" or what.startswith("unknown collector")
    shown = f" (got {value!r})" if found and not unknown and repr(value) not in what else ""
    return ConfigError(
        f"{where}{key}: {what}{shown}", path=key, value=value if found else None, source=source
    )


def from_mapping(data: Mapping[str, Any], source: str = "") -> Config:
    """Validate already-parsed TOML data into a Config, or raise ConfigError naming the key path."""
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as err:
        raise _validation_error(err, data, source) from err


def merge_tables(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` layered on `under`: tables merged key by key, any other value of `over` wins."""
    merged = dict(under)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = merge_tables(below, value)
        else:
            merged[key] = value
    return merged


def load(
    path: str | Path | None,
    *,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load a TOML config file; None means the embedded defaults. `defaults` (TOML-shaped tables, e.g.
    a profile's) lie between the embedded defaults and the file, `overrides` (flags) over the file."""
    if path is None:
        layered = merge_tables(defaults or {}, overrides or {})
        return from_mapping(layered, source="defaults and flags") if layered else Config()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config file: {err.strerror}", source=str(p)) from err
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not valid TOML: {err}", source=str(p)) from err
    layered = merge_tables(merge_tables(defaults or {}, data), overrides or {})
    return from_mapping(layered, source=str(p))


def apply_overrides(
    config: Config,
    env: Mapping[str, str],
    *,
    data_dir: str | None = None,
    log_level: str | None = None,
    web_listen: str | None = None,
    bus_listen: str | None = None,
) -> Config:
    """Layer environment variables, then command-line flags, over a loaded Config."""
    appliance: dict[str, Any] = msgspec.structs.asdict(config.appliance)
    web: dict[str, Any] = msgspec.structs.asdict(config.web)
    bus: dict[str, Any] = msgspec.structs.asdict(config.bus)
    if env.get("AMOSKYS_DATA_DIR"):
        appliance["data_dir"] = env["AMOSKYS_DATA_DIR"]
    if env.get("AMOSKYS_LOG_LEVEL"):
        appliance["log_level"] = env["AMOSKYS_LOG_LEVEL"].lower()
    if data_dir:
        appliance["data_dir"] = data_dir
    if log_level:
        appliance["log_level"] = log_level.lower()
    if web_listen:
        web["listen"] = web_listen
    if bus_listen:
        bus["listen"] = bus_listen
    merged = msgspec.structs.asdict(config) | {"appliance": appliance, "web": web, "bus": bus}
    return from_mapping(msgspec.to_builtins(merged), source="environment/flags")
