"""The opt-in TCP service probe: connect() to a few configured ports of a newly seen device.

A full TCP handshake, closed at once (nothing is sent), no banner read. Connection attempts across all
devices are paced to ``rate`` per second, so a burst of new devices never becomes a port scan storm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class TcpProbe:
    """Paced TCP connects; ``open_ports(ip, ports)`` says which accepted a connection."""

    def __init__(self, *, rate: float, timeout: float) -> None:
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.attempts = 0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def _pace(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            now = loop.time()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)

    async def is_open(self, ip: str, port: int) -> bool:
        """True when `ip`:`port` accepted a TCP connection within the timeout."""
        await self._pace()
        self.attempts += 1
        try:
            async with asyncio.timeout(self.timeout):
                _reader, writer = await asyncio.open_connection(ip, port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # a reset on close still means it was open
        return True

    async def open_ports(self, ip: str, ports: Iterable[int]) -> list[int]:
        """The ports of `ip` that accepted a connection (tried in order, paced)."""
        return [port for port in ports if await self.is_open(ip, port)]
