"""The active ARP sweep: one AF_PACKET socket for ARP on one interface, requests paced in packets/s.

:class:`ArpPort` owns the socket for the collector's life. Every ARP frame it receives goes to its
``on_arp`` callback (passive observation of the collector's own interface, for free); while a sweep
runs, replies from the addresses asked for are matched into the sweep's result. A sweep sends one
request per address at ``rate`` packets/s, then re-asks the silent ones ``retries`` times, each pass
followed by ``reply_timeout`` seconds of listening — as arp-scan does, with whole passes.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from amoskys.collectors.discovery import arp

SIOCGIFADDR = 0x8915
#: How far behind schedule the sender may fall before it sleeps (the loop's timer resolution).
_SLACK_SECONDS = 0.002
#: Sends between two yields to the event loop when the rate keeps the sender busy.
_YIELD_EVERY = 128
#: How long a full send buffer (ENOBUFS/EAGAIN) may last before the sweep fails.
_SEND_STALL_SECONDS = 2.0
_RECV_BYTES = 2048


class SweepError(OSError):
    """The sweep's socket failed; the message names the interface (and the subnet when sweeping one)."""


@dataclass
class SweepResult:
    """What one sweep found: replying address → MAC, and what it cost."""

    replies: dict[bytes, bytes] = field(default_factory=dict)
    sent: int = 0
    received: int = 0
    seconds: float = 0.0


def interface_ipv4(interface: str) -> bytes:
    """The interface's primary IPv4 address (4 bytes), or 0.0.0.0 when it has none (an ARP probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        except OSError as err:
            if err.errno == errno.EADDRNOTAVAIL:
                return b"\x00" * 4
            raise SweepError(
                err.errno, f"interface {interface!r}: cannot read its IPv4 address: {err.strerror}"
            ) from err
    return raw[20:24]


class ArpPort:
    """ARP in and out of one interface (an AF_PACKET socket; needs CAP_NET_RAW)."""

    def __init__(self, interface: str, on_arp: Callable[[int, arp.ArpPacket], None] | None = None) -> None:
        self.interface = interface
        self.on_arp = on_arp
        self.mac = b""
        self.ip = b"\x00" * 4
        self.received = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[bytes, int] | None = None  # ip → 0 while a sweep waits for it
        self._result: SweepResult | None = None
        self._all_answered: asyncio.Event | None = None
        self._clock: Callable[[], int] = lambda: 0
        self._subnet = ""

    def open(self, time_ns: Callable[[], int]) -> None:
        """Open and bind the socket, read the interface's MAC and IPv4 address, start receiving."""
        self._clock = time_ns
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP))
        except OSError as err:
            raise SweepError(
                err.errno, f"interface {self.interface!r}: cannot open an ARP socket: {err.strerror}"
            ) from err
        try:
            sock.bind((self.interface, arp.ETH_P_ARP))
            sock.setblocking(False)
            self.mac = sock.getsockname()[4][:6]
            self.ip = interface_ipv4(self.interface)
        except OSError as err:
            sock.close()
            raise SweepError(err.errno, f"interface {self.interface!r}: {err.strerror or err}") from err
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(256):
            try:
                frame, address = sock.recvfrom(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # a vanished interface shows on the next send, with its name
            if address[2] == socket.PACKET_OUTGOING:
                continue  # our own requests, looped back to every packet socket
            self.received += 1
            packet = arp.parse_frame(frame)
            if packet is None:
                continue
            pending = self._pending
            if (
                pending is not None
                and packet.op == arp.REPLY
                and packet.sender_ip in pending
                and packet.target_mac == self.mac
            ):
                result = self._result
                if result is not None and packet.sender_ip not in result.replies:
                    result.replies[packet.sender_ip] = packet.sender_mac
                    result.received += 1
                    del pending[packet.sender_ip]
                    if not pending and self._all_answered is not None:
                        self._all_answered.set()
                    continue  # the sweep's result reports it
            if self.on_arp is not None:
                self.on_arp(self._clock(), packet)

    async def sweep(
        self,
        network: ipaddress.IPv4Network,
        *,
        rate: float,
        retries: int,
        reply_timeout: float,
    ) -> SweepResult:
        """ARP-ask every host address of `network` (the appliance's own skipped); who answered."""
        sock = self._sock
        if sock is None or self._loop is None:
            raise SweepError(errno.EBADF, f"interface {self.interface!r}: the ARP socket is not open")
        loop = self._loop
        try:
            # re-read each sweep: a bridge's MAC follows its ports, and DHCP can move the address;
            # requests from a stale MAC would have every reply addressed elsewhere
            self.mac = sock.getsockname()[4][:6]
            self.ip = interface_ipv4(self.interface)
        except OSError as err:
            raise SweepError(err.errno, f"interface {self.interface!r}: {err.strerror or err}") from err
        hosts = network.hosts() if network.prefixlen < 31 else iter(network)
        targets = [h.packed for h in hosts if h.packed != self.ip]
        self._subnet = str(network)
        result = self._result = SweepResult()
        pending = self._pending = dict.fromkeys(targets, 0)
        self._all_answered = asyncio.Event()
        started = loop.time()
        try:
            for attempt in range(retries + 1):
                ask = [ip for ip in targets if ip in pending]
                if not ask:
                    break
                await self._send_pass(sock, loop, ask, pending, rate, result, attempt)
                try:
                    await asyncio.wait_for(self._all_answered.wait(), reply_timeout)
                except TimeoutError:
                    pass
        finally:
            self._pending = None
            self._result = None
            result.seconds = loop.time() - started
        return result

    async def _send_pass(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        ask: list[bytes],
        pending: dict[bytes, int],
        rate: float,
        result: SweepResult,
        attempt: int,
    ) -> None:
        start = loop.time()
        since_yield = 0
        for i, ip in enumerate(ask):
            if ip not in pending:
                continue  # answered meanwhile (a late reply to the previous pass)
            delay = start + i / rate - loop.time()
            if delay > _SLACK_SECONDS:
                await asyncio.sleep(delay)
                since_yield = 0
            elif since_yield >= _YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            await self._send(sock, loop, arp.build_request(self.mac, self.ip, ip), ip)
            result.sent += 1
            since_yield += 1

    async def _send(
        self, sock: socket.socket, loop: asyncio.AbstractEventLoop, frame: bytes, ip: bytes
    ) -> None:
        deadline = loop.time() + _SEND_STALL_SECONDS
        while True:
            try:
                sock.send(frame)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    target = ipaddress.IPv4Address(ip)
                    raise SweepError(
                        err.errno,
                        f"interface {self.interface!r}, subnet {self._subnet}: "
                        f"ARP request to {target} failed: {err.strerror}",
                    ) from err
            if loop.time() > deadline:
                raise SweepError(
                    errno.ENOBUFS,
                    f"interface {self.interface!r}, subnet {self._subnet}: "
                    f"send buffer full for {_SEND_STALL_SECONDS} s (link down?)",
                )
            await asyncio.sleep(0.005)
