"""The syslog sink: alerts as RFC 5424 messages (amoskys.sinks.rfc5424) over UDP, TCP or TLS.

TCP and TLS keep one connection, opened at the first batch and again after an error; a batch is
written as octet-counted frames and is delivered once the socket took it (syslog has no
application-level acknowledgement, so a receiver that dies with bytes in flight loses them; a batch
whose write fails is sent again whole). UDP sends a datagram per alert and cannot know whether any
arrived. The TLS context (CA, client certificate) is built in a worker thread before the sink starts;
the server's certificate must name the host of `address`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import structlog

from amoskys.config import SyslogSinkConfig, parse_listen
from amoskys.errors import ConfigError
from amoskys.forwarders.base import SendResult, SendStatus
from amoskys.sinks import rfc5424
from amoskys.sinks.alerts import AlertFilter, SinkAlert
from amoskys.sinks.metrics import DELIVERED, SinkMetrics
from amoskys.sinks.sink import AlertSink

log = structlog.get_logger(__name__)

#: The longest a connect or a write may take before the batch is retried on a new connection.
IO_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Messages:
    frames: list[bytes]  # octet-counted (TCP, TLS) or one datagram each (UDP)
    truncated: int


class _Datagrams(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for an earlier datagram: UDP syslog never knows what arrived


class SyslogSink(AlertSink):
    """Sends each batch of alerts to one syslog receiver."""

    def __init__(self, config: SyslogSinkConfig, metrics: SinkMetrics, *, tls: ssl.SSLContext | None) -> None:
        super().__init__(config.name, AlertFilter(config.min_level, config.rules), metrics)
        self._host, self._port = parse_listen(config.address)
        self._address = config.address
        self._transport = config.transport
        self._facility = config.facility
        self._app_name = config.app_name
        self._tls = tls
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._udp: asyncio.DatagramTransport | None = None

    def render(self, alerts: list[SinkAlert]) -> Messages:
        udp = self._transport == "udp"
        frames, truncated = [], 0
        for item in alerts:
            msg, cut = rfc5424.message(
                item,
                facility=self._facility,
                app_name=self._app_name,
                limit=rfc5424.UDP_MAX_OCTETS if udp else None,
            )
            truncated += cut
            frames.append(msg if udp else rfc5424.octet_counted(msg))
        return Messages(frames, truncated)

    async def deliver(self, payload: Messages) -> SendResult:
        try:
            async with asyncio.timeout(IO_TIMEOUT_SECONDS):
                if self._transport == "udp":
                    await self._send_datagrams(payload.frames)
                else:
                    await self._write_stream(b"".join(payload.frames))
        except (OSError, TimeoutError, ssl.SSLError, ssl.CertificateError) as err:
            await self._disconnect()
            what = "timed out" if isinstance(err, TimeoutError) else repr(err)
            return SendResult(
                SendStatus.RETRY,
                message=f"syslog {self._transport}://{self._address}: {what}",
                unreachable=True,
            )
        if payload.truncated:
            self.metrics.syslog_truncated.labels(self.name).inc(payload.truncated)
        self.metrics.alerts.labels(self.name, DELIVERED).inc(len(payload.frames))
        return SendResult(SendStatus.OK)

    async def _send_datagrams(self, frames: list[bytes]) -> None:
        if self._udp is None or self._udp.is_closing():
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=(self._host, self._port)
            )
        for frame in frames:
            self._udp.sendto(frame)

    async def _write_stream(self, data: bytes) -> None:
        writer = self._writer
        reader = self._reader
        if writer is None or reader is None or writer.is_closing() or reader.at_eof():
            if writer is not None:
                await self._disconnect()  # the receiver closed it: a new one
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
            self._reader, self._writer = reader, writer
            self.metrics.syslog_connects.labels(self.name).inc()
        writer.write(data)
        await writer.drain()

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (OSError, TimeoutError, ssl.SSLError):
                pass  # it is going away either way
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def close(self) -> None:
        await self._disconnect()


def tls_context(config: SyslogSinkConfig, key: str) -> ssl.SSLContext:
    """The client TLS context of a `transport = "tls"` sink (`key`: its config path). Blocking (reads
    the CA and certificate files): call it off the loop."""
    try:
        context = ssl.create_default_context(cafile=config.ca_file or None)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"{key}: cannot load the TLS files: {err}", path=key) from err
    return context


async def build_syslog_sink(config: SyslogSinkConfig, metrics: SinkMetrics, *, key: str) -> SyslogSink:
    """The sink of one `[[sinks.syslog]]` table (`key`: its path, e.g. ``sinks.syslog[0]``)."""
    tls = await asyncio.to_thread(tls_context, config, key) if config.transport == "tls" else None
    return SyslogSink(config, metrics, tls=tls)
