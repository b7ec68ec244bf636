"""The opt-in TCP probe: open ports found, closed ones not, attempts paced; the collector probes NEW devices only when asked."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.discovery.inventory import ARP_SWEEP
from amoskys.collectors.discovery.probe import TcpProbe
from amoskys.proto import events_pb2

from discovery_harness import devices, make
from support import eventually

MAC = bytes.fromhex("b827eb000051")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def listening() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_open_ports_are_found_and_attempts_are_paced() -> None:
    server, port = await listening()
    shut = closed_port()
    probe = TcpProbe(rate=20, timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with server:
        assert await probe.open_ports("127.0.0.1", [port, shut, port, shut]) == [port, port]
    assert probe.attempts == 4
    assert loop.time() - started >= 3 / 20 * 0.9  # four attempts at 20/s: three intervals


async def test_the_collector_probes_new_devices_only_when_probe_is_on(tmp_path: Path) -> None:
    server, port = await listening()
    async with server:
        off, _ = make(tmp_path, DiscoveryConfig(interface="lo"))
        off._feed(1, MAC, ARP_SWEEP, ip="127.0.0.1")
        assert off._probe_queue.empty()

        config = DiscoveryConfig(
            interface="lo", probe="on", probe_ports=[port, closed_port()], probe_rate_per_second=50
        )
        on, sink = make(tmp_path, config)
        on._feed(1, MAC, ARP_SWEEP, ip="127.0.0.1")
        task = asyncio.create_task(on._probe_loop())
        try:
            await eventually(
                lambda: devices(sink, events_pb2.DeviceEvent.SEEN), within=15, what="the probe's SEEN event"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        [seen] = devices(sink, events_pb2.DeviceEvent.SEEN)
        assert list(seen.open_tcp_ports) == [port] and "tcp_probe" in seen.seen_by
        assert on._m_probes._value.get() == 2
