"""Capture-file readers (classic pcap and pcapng), fast and without scapy.

A reader reads its file in large chunks and hands every packet to a *sink* — anything with a
``packet(ts_ns, buf, off, end, parse)`` method, like :class:`~amoskys.collectors.flow.table.FlowTable`
— as offsets into the chunk: no per-packet slice, no per-packet object beyond the timestamp.
``feed(sink, max_packets)`` reads a bounded batch, so an asyncio caller can yield between batches.

- pcap: both byte orders, microsecond (``a1b2c3d4``) and nanosecond (``a1b23c4d``) timestamps.
- pcapng: several sections (each with its byte order), Interface Description Blocks with
  ``if_tsresol`` and ``if_tsoffset``, Enhanced, Simple and (obsolete) Packet Blocks; other blocks
  are skipped. Each interface's link type picks its parse function (``parse.parser_for``).
A file that ends inside a record is not an error: ``truncated`` says so. A record that cannot be
right (a length beyond any snap length, a block length that is not a multiple of 4) raises
:class:`CaptureFileError` naming the file and the byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from amoskys.collectors.flow import parse as P
from amoskys.errors import AmoskysError

CHUNK_BYTES = 1 << 20
MAX_RECORD_BYTES = 1 << 18  # libpcap's largest snap length (262144)
MAX_BLOCK_BYTES = 1 << 26
NS = 1_000_000_000

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class CaptureFileError(AmoskysError):
    """A capture file is not pcap or pcapng, or a record in it cannot be right.

    ``path`` names the file, ``offset`` the byte where the problem is.
    """

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        super().__init__(f"{path}: {message} (at byte {offset})")
        self.path = path
        self.offset = offset


class PacketSink(Protocol):
    """Where a reader puts packets: ``buf[off:end]`` is the frame, ``parse`` its link type's parser,
    ``vlan`` an outer VLAN id the capture took out of the frame (live capture; files leave it 0)."""

    def packet(
        self, ts: int, buf: Any, off: int, end: int, parse: P.ParseFn = ..., vlan: int = 0
    ) -> None: ...


class CaptureReader:
    """Common state of the readers: the file, the current chunk, and what was read so far."""

    format = ""

    def __init__(self, stream: IO[bytes], name: str, head: bytes) -> None:
        self.name = name
        self.packets = 0  # records handed to a sink
        self.truncated = False  # the file ended inside a record
        self.linktypes: list[int] = []  # by interface (pcap: one)
        self._stream = stream
        self._buf = head
        self._pos = 0
        self._consumed = 0  # file offset of _buf[0]
        self._eof = False

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()

    def feed(self, sink: PacketSink, max_packets: int = 1 << 62) -> int:
        """Hand up to ``max_packets`` packets to ``sink``; returns how many (0: end of file)."""
        raise NotImplementedError

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Every remaining packet as ``(ts_ns, frame bytes)`` (slow: for tests and tools)."""
        out: list[tuple[int, bytes]] = []

        class _Collect:
            def packet(
                self,
                ts: int,
                buf: Any,
                off: int,
                end: int,
                parse: P.ParseFn = P.parse_ethernet,
                vlan: int = 0,
            ) -> None:
                out.append((ts, bytes(buf[off:end])))

        sink = _Collect()
        while self.feed(sink, 4096):
            yield from out
            out.clear()

    def _refill(self) -> bool:
        """Keep the unread tail of the chunk and append the next chunk; False at end of file."""
        if self._eof:
            return False
        more = self._stream.read(CHUNK_BYTES)
        if not more:
            self._eof = True
            return False
        self._consumed += self._pos
        self._buf = self._buf[self._pos :] + more
        self._pos = 0
        return True

    def _error(self, message: str, pos: int) -> CaptureFileError:
        return CaptureFileError(message, path=self.name, offset=self._consumed + pos)


class PcapReader(CaptureReader):
    """Classic libpcap files."""

    format = "pcap"

    def __init__(self, stream: IO[bytes], name: str, head: bytes) -> None:
        super().__init__(stream, name, head)
        while len(self._buf) < 24 and self._refill():
            pass
        if len(self._buf) < 24:
            raise self._error("pcap file ends inside its 24-byte header", len(self._buf))
        order, self._ts_mult = _PCAP_MAGIC[bytes(self._buf[:4])]
        self._order = order
        major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(order + "HHiIII", self._buf, 4)
        if major != 2:
            raise self._error(f"unsupported pcap version {major}.{minor}", 4)
        self.snaplen = snaplen
        self.linktype = linktype & 0x0FFFFFFF  # upper bits: FCS length flags
        self.linktypes = [self.linktype]
        self._parse = P.parser_for(self.linktype)
        self._max_record = max(snaplen, MAX_RECORD_BYTES)
        self._hdr = struct.Struct(order + "III4x").unpack_from  # seconds, fraction, captured length
        self._pos = 24

    def feed(self, sink: PacketSink, max_packets: int = 1 << 62) -> int:
        packet = sink.packet
        parse = self._parse
        hdr = self._hdr
        mult = self._ts_mult
        limit = self._max_record
        ns = NS
        count = 0
        while count < max_packets:
            buf = self._buf
            pos = self._pos
            n = len(buf)
            while count < max_packets and n - pos >= 16:
                sec, frac, caplen = hdr(buf, pos)
                end = pos + 16 + caplen
                if end > n:
                    if caplen > limit:
                        raise self._error(f"packet record claims {caplen} captured bytes", pos)
                    break
                packet(sec * ns + frac * mult, buf, pos + 16, end, parse)
                pos = end
                count += 1
            self._pos = pos
            if count >= max_packets:
                break
            if not self._refill():
                if self._pos < len(self._buf):
                    self.truncated = True
                    self._pos = len(self._buf)
                break
        self.packets += count
        return count


class PcapngReader(CaptureReader):
    """pcapng files (several sections and interfaces)."""

    format = "pcapng"

    def __init__(self, stream: IO[bytes], name: str, head: bytes) -> None:
        super().__init__(stream, name, head)
        self._order = "<"
        # per interface of the current section: (parse, multiplier, divisor, offset_ns, snaplen)
        self._ifaces: list[tuple[P.ParseFn, int, int, int, int]] = []
        self._u32 = struct.Struct("<II").unpack_from
        self._epb = struct.Struct("<IIIII").unpack_from
        self._ts = 0  # the last packet time: Simple Packet Blocks carry none and take this one

    def feed(self, sink: PacketSink, max_packets: int = 1 << 62) -> int:
        packet = sink.packet
        count = 0
        ts = self._ts
        while count < max_packets:
            buf = self._buf
            pos = self._pos
            n = len(buf)
            u32 = self._u32
            epb = self._epb
            ifaces = self._ifaces
            while count < max_packets and n - pos >= 12:
                btype, blen = u32(buf, pos)
                if btype == 0x0A0D0D0A:  # a section header: byte order first
                    self._pos = pos
                    self._section(buf, pos)
                    u32, epb, ifaces = self._u32, self._epb, self._ifaces
                    btype, blen = u32(buf, pos)
                if blen < 12 or blen & 3 or blen > MAX_BLOCK_BYTES:
                    raise self._error(f"pcapng block of type {btype:#x} has impossible length {blen}", pos)
                if n - pos < blen:
                    break
                if btype == 6:  # Enhanced Packet Block
                    iface, hi, lo, caplen, _orig = epb(buf, pos + 8)
                    start = pos + 28
                    if caplen > blen - 32 or iface >= len(ifaces):
                        raise self._error(self._epb_problem(caplen, blen, iface), pos)
                    parse, mult, div, offset, _snap = ifaces[iface]
                    ts = (hi << 32 | lo) * mult // div + offset
                    packet(ts, buf, start, start + caplen, parse)
                    count += 1
                elif btype == 1:
                    self._interface(buf, pos, blen)
                    ifaces = self._ifaces
                elif btype == 3:  # Simple Packet Block: no timestamp (the previous packet's), interface 0
                    if not ifaces:
                        raise self._error("simple packet block before any interface", pos)
                    orig = u32(buf, pos + 8)[0]
                    caplen = min(orig, blen - 16, ifaces[0][4] or orig)
                    packet(ts, buf, pos + 12, pos + 12 + caplen, ifaces[0][0])
                    count += 1
                elif btype == 2:  # obsolete Packet Block
                    iface, hi, lo, caplen, _orig = self._opb(buf, pos + 8)
                    if caplen > blen - 32 or iface >= len(ifaces):
                        raise self._error(self._epb_problem(caplen, blen, iface), pos)
                    parse, mult, div, offset, _snap = ifaces[iface]
                    ts = (hi << 32 | lo) * mult // div + offset
                    packet(ts, buf, pos + 28, pos + 28 + caplen, parse)
                    count += 1
                pos += blen
            self._pos = pos
            if count >= max_packets:
                break
            if not self._refill():
                if self._pos < len(self._buf):
                    self.truncated = True
                    self._pos = len(self._buf)
                break
        self._ts = ts
        self.packets += count
        return count

    def _opb(self, buf: Any, pos: int) -> tuple[int, int, int, int, int]:
        iface, _drops, hi, lo, caplen, orig = struct.unpack_from(self._order + "HHIIII", buf, pos)
        return iface, hi, lo, caplen, orig

    def _epb_problem(self, caplen: int, blen: int, iface: int) -> str:
        if iface >= len(self._ifaces):
            return f"packet block names interface {iface}, but the section has {len(self._ifaces)}"
        return f"packet block of {blen} bytes claims {caplen} captured bytes"

    def _section(self, buf: Any, pos: int) -> None:
        if len(buf) - pos < 12:
            return
        bom = bytes(buf[pos + 8 : pos + 12])
        if bom == b"\x4d\x3c\x2b\x1a":
            self._order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            self._order = ">"
        else:
            raise self._error(f"pcapng section header with unknown byte-order magic {bom.hex()}", pos + 8)
        self._u32 = struct.Struct(self._order + "II").unpack_from
        self._epb = struct.Struct(self._order + "IIIII").unpack_from
        self._ifaces = []

    def _interface(self, buf: Any, pos: int, blen: int) -> None:
        order = self._order
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
        resol = 6
        offset_s = 0
        opt = pos + 16
        end = pos + blen - 4
        while opt + 4 <= end:
            code, length = struct.unpack_from(order + "HH", buf, opt)
            if code == 0:
                break
            value = opt + 4
            if value + length > end:
                raise self._error("interface option runs past its block", opt)
            if code == 9 and length >= 1:
                resol = buf[value]
            elif code == 14 and length >= 8:
                offset_s = struct.unpack_from(order + "q", buf, value)[0]
            opt = value + ((length + 3) & ~3)
        if resol & 0x80:  # a power of two
            mult, div = NS, 1 << (resol & 0x7F)
        elif resol <= 9:
            mult, div = 10 ** (9 - resol), 1
        else:
            mult, div = 1, 10 ** (resol - 9)
        self._ifaces.append((P.parser_for(linktype), mult, div, offset_s * NS, snaplen))
        self.linktypes.append(linktype)


def open_stream(stream: IO[bytes], name: str) -> CaptureReader:
    """A reader for an open binary stream (a file, or stdin), by the magic of its first bytes."""
    head = stream.read(CHUNK_BYTES)
    if len(head) < 4:
        raise CaptureFileError("not a capture file: shorter than 4 bytes", path=name, offset=0)
    magic = head[:4]
    if magic in _PCAP_MAGIC:
        return PcapReader(stream, name, head)
    if magic == _PCAPNG_SHB:
        return PcapngReader(stream, name, head)
    raise CaptureFileError(
        f"not a pcap or pcapng file (starts with {magic.hex()}; pcap starts with a1b2c3d4 or "
        "d4c3b2a1, pcapng with 0a0d0d0a)",
        path=name,
        offset=0,
    )


def open_capture(path: Path | str) -> CaptureReader:
    """A reader for the pcap or pcapng file at ``path`` (close it, or use it as a context manager)."""
    name = str(path)
    try:
        stream = open(path, "rb")  # the reader owns it and closes it
    except OSError as err:
        raise CaptureFileError(f"cannot open: {err.strerror}", path=name, offset=0) from err
    try:
        return open_stream(stream, name)
    except BaseException:
        stream.close()
        raise
