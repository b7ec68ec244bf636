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


class ForwardersConfig(_Struct, frozen=True):
    bus: BusForwarderConfig = BusForwarderConfig()


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
    for key, _ in _PATH_PART.findall(path.removeprefix("$")):
        hints = typing.get_type_hints(tp, include_extras=True) if isinstance(tp, type) else {}
        tp = hints.get(key)
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def _validation_error(err: msgspec.ValidationError, data: Mapping[str, Any], source: str) -> ConfigError:
    text = str(err)
    what, _, path = text.rpartition(" - at `")
    path = path.rstrip("`") if what else "$"
    what = what or text
    m = re.fullmatch(r"`(\w+)`: (.*)", what, flags=re.S)
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
