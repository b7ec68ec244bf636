"""LiveCapture: frames from a network interface through an AF_PACKET TPACKET_V3 ring (a PacketSource).

The kernel writes frames into a ring of blocks shared with us by ``mmap``; a block goes to user space
when it is full or after ``BLOCK_TIMEOUT_MS``. ``feed`` walks the ready blocks with ``struct`` (no
system call per frame, no copy: the parser reads the ring memory) and hands each block back to the
kernel by setting its status to ``TP_STATUS_KERNEL``; ``wait`` sleeps on the socket with
``loop.add_reader`` until the next block is ready.

Set-up order matters: the socket is opened for no protocol (it receives nothing), gets its BPF filter
(compiled by libpcap, :mod:`bpf`) and its ring, and only then is bound to the interface for every
protocol — so no unfiltered frame is ever queued. Promiscuous mode is a ``PACKET_ADD_MEMBERSHIP``,
dropped by the kernel when the socket closes.

The interface's hardware type picks the parser: Ethernet and loopback frames, or bare IP packets
(tun, WireGuard: ``ARPHRD_NONE``/``ARPHRD_RAWIP``); the filter is compiled for the same link type.

On loopback (``ARPHRD_LOOPBACK``) every frame reaches a packet socket twice: once as the host sends
it (``sll_pkttype`` ``PACKET_OUTGOING``) and once as the host receives it (``PACKET_HOST``). As libpcap
does (``linux_check_direction`` in pcap-linux.c drops outgoing frames of the loopback device), the
capture skips the outgoing copy there, so each packet counts once, as tcpdump and tshark count it;
skipped copies are not handed to the table (``outgoing_skipped`` counts them) but are in the kernel's
``PACKET_STATISTICS``. The packet type is read from the ``sockaddr_ll`` the kernel writes after each
``tpacket3_hdr``, at ``TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`` = 48 bytes from the frame's
header. On every other interface an outgoing frame is the host's own traffic, seen only once, and
counts: the decision is made once, at :meth:`LiveCapture.open`, and other interfaces keep a frame
loop that never reads the packet type.

The kernel strips the outermost VLAN tag of a received frame into the ring's metadata
(``tp_vlan_tci`` with ``TP_STATUS_VLAN_VALID``); its id goes to the table as the frame's outer VLAN
(a tag still in the frame is then the inner one), so tagged and QinQ traffic meters as from a file.

``kernel_stats()`` reads ``PACKET_STATISTICS`` (``tpacket_stats_v3``; reading resets it): frames the
kernel saw for this socket, and the ones it dropped because the ring was full.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from amoskys.collectors.flow import bpf
from amoskys.collectors.flow.parse import ParseFn, parse_ethernet, parse_raw
from amoskys.collectors.flow.pcap import PacketSink
from amoskys.errors import CollectorError, StartupError

# linux/if_packet.h, linux/if_ether.h
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
ETH_P_ALL = 0x0003
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
PACKET_OUTGOING = 4  # sockaddr_ll.sll_pkttype of a frame the host sent

# Interface hardware types (linux/if_arp.h, /sys/class/net/<name>/type) the capture decodes, with
# the parser and the libpcap DLT their frames have on a SOCK_RAW packet socket.
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_RAWIP = 519
ARPHRD_NONE = 65534  # tun devices, WireGuard: bare IP packets
DLT_RAW = 12
LINK_TYPES: dict[int, tuple[ParseFn, int]] = {
    ARPHRD_ETHER: (parse_ethernet, bpf.DLT_EN10MB),
    ARPHRD_LOOPBACK: (parse_ethernet, bpf.DLT_EN10MB),
    ARPHRD_RAWIP: (parse_raw, DLT_RAW),
    ARPHRD_NONE: (parse_raw, DLT_RAW),
}

MIB = 1 << 20
#: A block goes to user space when full or this long after its first frame (bounds the latency).
BLOCK_TIMEOUT_MS = 10
#: Frame slot size the ring is described with (TPACKET_V3 packs frames of any size into a block).
FRAME_BYTES = 2048

_REQ3 = struct.Struct("=7I")  # block_size, block_nr, frame_size, frame_nr, retire_blk_tov, priv, feature
_BLOCK = struct.Struct("=8xIII")  # tpacket_block_desc: (version, priv offset,) status, num_pkts, first offset
_BLOCK_STATUS = struct.Struct("=I")
# tpacket3_hdr: next_offset, sec, nsec, snaplen, (len,) status, mac, (net, rxhash,) vlan_tci, (vlan_tpid)
_HDR = struct.Struct("=IIII4xIH6xI2x")
# ... the same, then the sockaddr_ll at TPACKET_ALIGN(48) = 48: (family, protocol, ifindex, hatype,)
# pkttype at 48 + 10
_HDR_PKTTYPE = struct.Struct("=IIII4xIH6xI22xB")
_STATS = struct.Struct("=III")  # tpacket_stats_v3: packets (drops included), drops, freeze_q_cnt
_MREQ = struct.Struct("=iHH8s")  # packet_mreq: ifindex, type, alen, address


@dataclass(frozen=True, slots=True)
class KernelStats:
    """What the kernel counted for the capture socket since the previous read."""

    packets: int  # frames that matched the socket (filter passed), dropped ones included
    drops: int  # frames dropped because the ring had no free block
    freezes: int  # times the ring was full (the queue froze)


class Link(NamedTuple):
    """How frames of an interface's hardware type are read."""

    parse: ParseFn
    dlt: int  # the libpcap link type its filter is compiled for
    hatype: int  # ARPHRD_* (linux/if_arp.h)


def link_of(interface: str, sys_class_net: Path = Path("/sys/class/net")) -> Link:
    """The parser and libpcap DLT for ``interface``'s hardware type; StartupError when the interface
    does not exist (retry: it may come up) or its type is not one the capture decodes (no retry)."""
    try:
        hatype = int((sys_class_net / interface / "type").read_text())
    except (OSError, ValueError) as err:
        raise StartupError(f"capture interface {interface!r}: no such interface", retry=True) from err
    link = LINK_TYPES.get(hatype)
    if link is None:
        raise StartupError(
            f"capture interface {interface!r}: hardware type {hatype} is not supported "
            "(Ethernet, loopback and raw-IP interfaces such as tun or WireGuard are)",
            retry=False,
        )
    return Link(*link, hatype)


def block_bytes_for(ring_bytes: int) -> int:
    """The block size for a ring: 1 MiB blocks for rings of 16 MiB and more, else 256 KiB."""
    return MIB if ring_bytes >= 16 * MIB else MIB // 4


class LiveCapture:
    """A TPACKET_V3 capture on ``interface`` (see the module docstring). Needs CAP_NET_RAW.

    Constructing it does no I/O; :meth:`open` sets up the socket and ring (``StartupError`` naming the
    interface when it cannot), :meth:`close` releases them.
    """

    finished = False  # a live capture never ends by itself

    def __init__(
        self,
        interface: str,
        *,
        ring_bytes: int = 64 * MIB,
        filter_expression: str = "",
        promiscuous: bool = True,
    ) -> None:
        self.interface = interface
        self.block_bytes = block_bytes_for(ring_bytes)
        self.block_count = max(2, ring_bytes // self.block_bytes)
        self.filter_expression = filter_expression
        self.promiscuous = promiscuous
        self.sock: socket.socket | None = None
        self.ring: mmap.mmap | None = None
        self._block = 0  # the block feed() reads next
        self._left = 0  # frames of that block not yet read (0: block not started)
        self._pos = 0  # offset of its next frame
        self.parse: ParseFn = parse_ethernet  # set by open() from the interface's hardware type
        #: loopback: each frame comes twice, the sent copy is skipped (set by open())
        self.skip_outgoing = False
        self.outgoing_skipped = 0  # sent copies skipped on loopback since open()

    @property
    def ring_bytes(self) -> int:
        return self.block_bytes * self.block_count

    # ------------------------------------------------------------------ set-up
    def open(self) -> None:
        """Open the socket, attach the filter, map the ring, bind to the interface (in that order)."""
        name = self.interface
        try:
            ifindex = socket.if_nametoindex(name)
        except OSError as err:
            raise StartupError(f"capture interface {name!r}: no such interface", retry=True) from err
        link = link_of(name)
        program = (
            bpf.compile_filter(self.filter_expression, linktype=link.dlt) if self.filter_expression else None
        )
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as err:
            raise StartupError(f"capture on {name!r}: needs CAP_NET_RAW ({err})", retry=False) from err
        ring = None
        try:
            step = "PACKET_VERSION TPACKET_V3"
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            if program is not None:
                step = f"SO_ATTACH_FILTER {self.filter_expression!r}"
                bpf.attach(sock, program)
            step = f"PACKET_RX_RING of {self.block_count} x {self.block_bytes} bytes"
            frames = self.block_bytes // FRAME_BYTES * self.block_count
            req = _REQ3.pack(self.block_bytes, self.block_count, FRAME_BYTES, frames, BLOCK_TIMEOUT_MS, 0, 0)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            step = "mmap of the ring"
            ring = mmap.mmap(
                sock.fileno(), self.ring_bytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
            step = "bind"
            sock.bind((name, ETH_P_ALL))
            if self.promiscuous:
                step = "PACKET_ADD_MEMBERSHIP promiscuous"
                sock.setsockopt(
                    SOL_PACKET, PACKET_ADD_MEMBERSHIP, _MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b"")
                )
            sock.setblocking(False)
        except OSError as err:
            if ring is not None:
                ring.close()
            sock.close()
            raise StartupError(f"capture on {name!r}: {step} failed: {err}", retry=True) from err
        self.sock = sock
        self.ring = ring
        self.parse = link.parse
        self.skip_outgoing = link.hatype == ARPHRD_LOOPBACK
        self.outgoing_skipped = 0
        self._block = 0
        self._left = 0
        self.kernel_stats()  # start counting from now

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # ------------------------------------------------------------------ reading
    def ready(self) -> bool:
        """True when the next block holds frames for us."""
        ring = self.ring
        if ring is None:
            return False
        return self._left > 0 or bool(
            _BLOCK.unpack_from(ring, self._block * self.block_bytes)[0] & TP_STATUS_USER
        )

    def feed(self, sink: PacketSink, max_packets: int) -> int:
        """Hand up to ``max_packets`` frames from ready blocks to ``sink.packet``; return how many."""
        ring = self.ring
        if ring is None:
            raise CollectorError(f"capture on {self.interface!r} is not open")
        if self.skip_outgoing:
            return self._feed_received(ring, sink, max_packets)
        packet = sink.packet
        parse = self.parse
        plain = parse is parse_ethernet  # the table's default parser: not passed per frame
        hdr = _HDR.unpack_from
        blocks = self.block_count
        size = self.block_bytes
        block, left, pos = self._block, self._left, self._pos
        count = 0
        while count < max_packets:
            base = block * size
            if not left:
                status, num, first = _BLOCK.unpack_from(ring, base)
                if not status & TP_STATUS_USER:
                    break
                left, pos = num, base + first
            while left and count < max_packets:
                nxt, sec, nsec, snaplen, status, mac, tci = hdr(ring, pos)
                start = pos + mac
                if status & TP_STATUS_VLAN_VALID:
                    packet(sec * 1_000_000_000 + nsec, ring, start, start + snaplen, parse, tci & 0xFFF)
                elif plain:
                    packet(sec * 1_000_000_000 + nsec, ring, start, start + snaplen)
                else:
                    packet(sec * 1_000_000_000 + nsec, ring, start, start + snaplen, parse)
                pos += nxt
                left -= 1
                count += 1
            if left:
                break
            _BLOCK_STATUS.pack_into(ring, base + 8, TP_STATUS_KERNEL)
            block = (block + 1) % blocks
        self._block, self._left, self._pos = block, left, pos
        return count

    def _feed_received(self, ring: mmap.mmap, sink: PacketSink, max_packets: int) -> int:
        """:meth:`feed` for loopback: the same walk, skipping the sent copy of each frame
        (``PACKET_OUTGOING``); skipped copies are not counted in the frames returned."""
        packet = sink.packet
        parse = self.parse
        plain = parse is parse_ethernet
        hdr = _HDR_PKTTYPE.unpack_from
        blocks = self.block_count
        size = self.block_bytes
        block, left, pos = self._block, self._left, self._pos
        count = skipped = 0
        while count < max_packets:
            base = block * size
            if not left:
                status, num, first = _BLOCK.unpack_from(ring, base)
                if not status & TP_STATUS_USER:
                    break
                left, pos = num, base + first
            while left and count < max_packets:
                nxt, sec, nsec, snaplen, status, mac, tci, pkttype = hdr(ring, pos)
                if pkttype == PACKET_OUTGOING:
                    skipped += 1
                else:
                    start = pos + mac
                    if status & TP_STATUS_VLAN_VALID:
                        packet(sec * 1_000_000_000 + nsec, ring, start, start + snaplen, parse, tci & 0xFFF)
                    elif plain:
                        packet(sec * 1_000_000_000 + nsec, ring, start, start + snaplen)
                    else:
                        packet(sec * 1_000_000_000 + nsec, ring, start, start + snaplen, parse)
                    count += 1
                pos += nxt
                left -= 1
            if left:
                break
            _BLOCK_STATUS.pack_into(ring, base + 8, TP_STATUS_KERNEL)
            block = (block + 1) % blocks
        self._block, self._left, self._pos = block, left, pos
        self.outgoing_skipped += skipped
        return count

    async def wait(self, timeout_seconds: float) -> None:
        """Return when a block is ready, or after ``timeout_seconds``; raise when the socket failed
        (the interface went away)."""
        sock = self.sock
        if sock is None or self.ready():
            return
        loop = asyncio.get_running_loop()
        woken = loop.create_future()
        fd = sock.fileno()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        loop.add_reader(fd, wake)
        try:
            async with asyncio.timeout(timeout_seconds):
                await woken
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(fd)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise CollectorError(f"capture on {self.interface!r}: {os.strerror(error)}")

    def kernel_stats(self) -> KernelStats:
        """The kernel's counts since the previous call (PACKET_STATISTICS resets them when read)."""
        if self.sock is None:
            return KernelStats(0, 0, 0)
        packets, drops, freezes = _STATS.unpack(
            self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        )
        return KernelStats(packets, drops, freezes)
