"""Packet header decoding for the flow meter: bytes in, a flat tuple (or a skip reason) out.

Pure and total: no I/O, no state, and no exception for any frame bytes — every read is preceded by a
length check, so a truncated or hostile frame becomes a *reason code* (an ``int``) instead of an
error. The caller counts reasons in a list indexed by code (``REASONS`` names them).

Every ``parse_*`` function takes ``(buf, off, end)`` with ``0 <= off <= end <= len(buf)``: the frame
is ``buf[off:end]``, where ``buf`` is anything ``struct.unpack_from`` reads (``bytes``, a
``memoryview`` over a file chunk or a TPACKET_V3 ring block) and is never sliced. Result for an IP
packet, a plain tuple (a NamedTuple costs 2-3x more to build, and this runs once per packet)::

    (key, proto, vlan, octets, tcp_flags, frag)
      0     1     2      3        4        5

- ``key``: ``src ‖ dst ‖ sport ‖ dport`` as network-order bytes — 12 long for IPv4, 36 for IPv6 —
  the packet's *directional* flow key, taken in one slice where the headers allow. Ports are the
  TCP, UDP or SCTP ports; for ICMP and ICMPv6 the type and the code (16 bits each); zero for other
  protocols and for non-first fragments (the flow table finds those from the first fragment).
  ``split_key`` turns it back into addresses and ports.
- ``vlan``: ``outer << 12 | inner`` 802.1Q ids (0 when untagged).
- ``octets``: the IP packet length from its header (IPv4 total length, IPv6 40 + payload length), as
  NetFlow and IPFIX count it — also when the capture was cut short by a snap length.
- ``tcp_flags``: byte 13 of the TCP header (CWR ECE URG ACK PSH RST SYN FIN), 0 for other protocols.
- ``frag``: 0 when the packet is not a fragment, else ``ident << 2 | FRAG_FIRST`` (offset 0, more to
  come: it carries the ports) or ``ident << 2 | FRAG_LATER`` (no transport header).

The live capture (AF_PACKET, TPACKET_V3) gets frames whose outermost VLAN tag the kernel stripped into
its metadata: it passes that id as ``vlan`` to :func:`parse_ethernet`.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Any, Final, TypeAlias

#: One parsed IP packet (see the module docstring for the fields).
Packet: TypeAlias = tuple[bytes, int, int, int, int, int]
#: A parse function: ``(buf, off, end, vlan) -> Packet | reason`` (``vlan``: an outer VLAN id from the
#: capture's metadata, 0 for none).
ParseFn: TypeAlias = Callable[[Any, int, int, int], "Packet | int"]

# -- skip reasons (indexes into a list of counters; names in REASONS)
TRUNCATED_LINK = 0  # the frame ends inside its link header (Ethernet, VLAN tags, SLL, loopback)
NOT_IP = 1  # the link payload is neither IPv4 nor IPv6 (ARP, LLDP, STP, ...): not a flow packet
TRUNCATED_IP = 2  # the frame ends inside the IP header, its options or IPv6 extension headers
BAD_IP_HEADER = 3  # impossible IP header: wrong version, IHL < 5, length below the header, bad chain
TRUNCATED_TRANSPORT = 4  # the IP payload ends before the ports (TCP: before the flags byte)
UNSUPPORTED_LINK_TYPE = 5  # a capture interface whose link type the meter does not decode

REASONS: tuple[str, ...] = (
    "truncated_link",
    "not_ip",
    "truncated_ip",
    "bad_ip_header",
    "truncated_transport",
    "unsupported_link_type",
)

# Result tuple indexes (for readers of the tuple outside the hot path). Final literals, so that a
# type checker knows ``packet[KEY]`` is the bytes and the others ints.
KEY: Final = 0
PROTO: Final = 1
VLAN: Final = 2
OCTETS: Final = 3
TCP_FLAGS: Final = 4
FRAG: Final = 5
FRAG_FIRST = 1
FRAG_LATER = 2

# pcap LINKTYPE_* values decoded here.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# Fast paths: Ethernet + IPv4 (no options) + ports and TCP flags, in one read; the same for IPv6
# without extension headers. Fields: ethertype, version/IHL, total length, flags/fragment offset,
# protocol, then the 12 (36) key bytes, then the TCP flags byte.
_FAST_V4 = Struct("!12xHBxH2xHxB2x12s9xB")  # 48 bytes
_FAST_V6 = Struct("!12xHB3xHB1x36s9xB")  # 68 bytes: ethertype, version, payload length, next header
_FAST_V4_LEN = _FAST_V4.size
_FAST_V6_LEN = _FAST_V6.size
_fast_v4 = _FAST_V4.unpack_from
_fast_v6 = _FAST_V6.unpack_from

_ETYPE = Struct("!H").unpack_from
_TAG = Struct("!HH").unpack_from  # TCI, next ethertype
_V4 = Struct("!BxHHHxB2x8s").unpack_from  # ver/ihl, total length, id, flags/offset, proto, src+dst
_V6 = Struct("!B3xHB1x32s").unpack_from  # version/class, payload length, next header, src+dst
_FRAG6 = Struct("!BxHI").unpack_from  # next header, offset/flags, identification
_PORTS = Struct("!4s").unpack_from
_TCP = Struct("!4s9xB").unpack_from  # ports, flags byte (offset 13)
_ICMP = Struct("!BB").unpack_from
_ICMP_PORTS = Struct("!HH").pack
_NO_PORTS = bytes(4)

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
# IPv6 extension headers that may precede the transport header (RFC 8200 §4, RFC 7045).
_V6_EXT = frozenset((0, 43, 44, 51, 60, 135, 139, 140))
_V6_MAX_EXT = 8


def parse_ethernet(buf: Any, off: int, end: int, vlan: int = 0) -> Packet | int:
    """An Ethernet II frame, with any stack of 802.1Q / 802.1ad tags (the first two are kept).

    `vlan`: an outer VLAN id the capture already removed from the frame (the kernel's metadata);
    a tag still in the frame then counts as the inner one.

    Untagged TCP and UDP over IPv4 without options or fragmentation, or over IPv6 without extension
    headers — most packets of any link — take a fast path that reads all it needs with one
    ``unpack_from``; it returns exactly what the general path (``_parse_ethernet``) would (a
    property test checks it).
    """
    n = end - off
    if n >= _FAST_V4_LEN:
        etype, vihl, total, frag, proto, key, flags = _fast_v4(buf, off)
        if etype == 0x0800:
            if vihl == 0x45 and not frag & 0x3FFF:
                if proto == 6:
                    if total >= 34:
                        return (key, 6, vlan << 12, total, flags, 0)
                elif proto == 17 and total >= 24:
                    return (key, 17, vlan << 12, total, 0, 0)
        elif etype == 0x86DD and n >= _FAST_V6_LEN:
            etype, vtc, plen, nxt, key, flags = _fast_v6(buf, off)
            if vtc >> 4 == 6:
                if nxt == 6:
                    if plen >= 14:
                        return (key, 6, vlan << 12, 40 + plen, flags, 0)
                elif nxt == 17 and plen >= 4:
                    return (key, 17, vlan << 12, 40 + plen, 0, 0)
    return _parse_ethernet(buf, off, end, vlan)


def _parse_ethernet(buf: Any, off: int, end: int, vlan: int = 0) -> Packet | int:
    """The general Ethernet path (every frame the fast path does not take)."""
    if end - off < 14:
        return TRUNCATED_LINK
    etype = _ETYPE(buf, off + 12)[0]
    o = off + 14
    if etype in _VLAN_TPIDS:
        outer = vlan
        inner = 0
        tagged = 1 if vlan else 0
        while etype in _VLAN_TPIDS:
            if end - o < 4:
                return TRUNCATED_LINK
            tci, etype = _TAG(buf, o)
            o += 4
            if tagged == 0:
                outer = tci & 0xFFF
            elif tagged == 1:
                inner = tci & 0xFFF
            tagged += 1
        vlan = outer << 12 | inner
    else:
        vlan <<= 12
    if etype == 0x0800:
        return _ipv4(buf, o, end, vlan)
    if etype == 0x86DD:
        return _ipv6(buf, o, end, vlan)
    return NOT_IP


def parse_raw(buf: Any, off: int, end: int, vlan: int = 0) -> Packet | int:
    """A bare IP packet (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6): the version nibble decides."""
    if end <= off:
        return TRUNCATED_IP
    version = buf[off] >> 4
    if version == 4:
        return _ipv4(buf, off, end, vlan << 12)
    if version == 6:
        return _ipv6(buf, off, end, vlan << 12)
    return BAD_IP_HEADER


def parse_linux_sll(buf: Any, off: int, end: int, vlan: int = 0) -> Packet | int:
    """Linux "cooked" capture v1 (``tcpdump -i any``): a 16-byte header ending in the ethertype."""
    if end - off < 16:
        return TRUNCATED_LINK
    return _after_ethertype(buf, off + 16, end, _ETYPE(buf, off + 14)[0], vlan)


def parse_linux_sll2(buf: Any, off: int, end: int, vlan: int = 0) -> Packet | int:
    """Linux "cooked" capture v2: a 20-byte header starting with the ethertype."""
    if end - off < 20:
        return TRUNCATED_LINK
    return _after_ethertype(buf, off + 20, end, _ETYPE(buf, off)[0], vlan)


def parse_null(buf: Any, off: int, end: int, vlan: int = 0) -> Packet | int:
    """BSD loopback (LINKTYPE_NULL, LINKTYPE_LOOP): a 4-byte address family, then IP."""
    if end - off < 4:
        return TRUNCATED_LINK
    if end - off == 4:
        return TRUNCATED_IP
    version = buf[off + 4] >> 4
    if version == 4:
        return _ipv4(buf, off + 4, end, vlan << 12)
    if version == 6:
        return _ipv6(buf, off + 4, end, vlan << 12)
    return NOT_IP


def parse_unsupported(buf: Any, off: int, end: int, vlan: int = 0) -> Packet | int:
    """Every frame of a link type this module does not decode."""
    return UNSUPPORTED_LINK_TYPE


PARSERS: dict[int, ParseFn] = {
    LINKTYPE_NULL: parse_null,
    LINKTYPE_ETHERNET: parse_ethernet,
    LINKTYPE_RAW: parse_raw,
    LINKTYPE_LOOP: parse_null,
    LINKTYPE_LINUX_SLL: parse_linux_sll,
    LINKTYPE_IPV4: parse_raw,
    LINKTYPE_IPV6: parse_raw,
    LINKTYPE_LINUX_SLL2: parse_linux_sll2,
}


def parser_for(linktype: int) -> ParseFn:
    """The parse function for a pcap link type (``parse_unsupported`` for one not decoded here)."""
    return PARSERS.get(linktype, parse_unsupported)


def split_key(key: bytes) -> tuple[bytes, bytes, int, int]:
    """``(src, dst, sport, dport)`` of a flow key (addresses as raw bytes)."""
    a = (len(key) - 4) >> 1
    return key[:a], key[a : 2 * a], key[-4] << 8 | key[-3], key[-2] << 8 | key[-1]


def link_payload(buf: Any, off: int, end: int) -> tuple[int, int, int] | int:
    """``(ethertype, payload_offset, vlan)`` of an Ethernet frame (VLAN tags skipped), or a reason.

    For passive observers (ARP, LLDP): the flow path never calls it.
    """
    if end - off < 14:
        return TRUNCATED_LINK
    etype = _ETYPE(buf, off + 12)[0]
    o = off + 14
    vlan = 0
    while etype in _VLAN_TPIDS:
        if end - o < 4:
            return TRUNCATED_LINK
        tci, etype = _TAG(buf, o)
        if not vlan:
            vlan = tci & 0xFFF
        o += 4
    return etype, o, vlan


def _after_ethertype(buf: Any, o: int, end: int, etype: int, vlan: int) -> Packet | int:
    outer, inner, tagged = vlan, 0, 1 if vlan else 0
    while etype in _VLAN_TPIDS:
        if end - o < 4:
            return TRUNCATED_LINK
        tci, etype = _TAG(buf, o)
        o += 4
        if tagged == 0:
            outer = tci & 0xFFF
        elif tagged == 1:
            inner = tci & 0xFFF
        tagged += 1
    if etype == 0x0800:
        return _ipv4(buf, o, end, outer << 12 | inner)
    if etype == 0x86DD:
        return _ipv6(buf, o, end, outer << 12 | inner)
    return NOT_IP


def _ipv4(buf: Any, o: int, end: int, vlan: int) -> Packet | int:
    if end - o < 20:
        return TRUNCATED_IP
    vihl, total, ident, frag, proto, addrs = _V4(buf, o)
    ihl = (vihl & 15) << 2
    if vihl >> 4 != 4 or ihl < 20 or total < ihl:
        return BAD_IP_HEADER
    t = o + ihl
    lim = o + total
    if lim > end:
        lim = end
        if t > end:
            return TRUNCATED_IP
    fk = 0
    if frag & 0x3FFF:  # more fragments, or an offset
        if frag & 0x1FFF:  # a later fragment: no transport header
            return (addrs + _NO_PORTS, proto, vlan, total, 0, ident << 2 | FRAG_LATER)
        fk = ident << 2 | FRAG_FIRST
    return _transport(buf, t, lim, addrs, proto, vlan, total, fk)


def _ipv6(buf: Any, o: int, end: int, vlan: int) -> Packet | int:
    if end - o < 40:
        return TRUNCATED_IP
    vtc, plen, nxt, addrs = _V6(buf, o)
    if vtc >> 4 != 6:
        return BAD_IP_HEADER
    octets = 40 + plen
    ip_end = o + octets
    lim = ip_end if ip_end < end else end
    t = o + 40
    fk = 0
    hops = 0
    while nxt in _V6_EXT:
        hops += 1
        if hops > _V6_MAX_EXT or t + 8 > ip_end:
            return BAD_IP_HEADER
        if t + 8 > end:
            return TRUNCATED_IP
        if nxt == 44:
            nh, offset_flags, ident = _FRAG6(buf, t)
            t += 8
            if offset_flags >> 3:  # a later fragment: no transport header
                return (addrs + _NO_PORTS, nh, vlan, octets, 0, ident << 2 | FRAG_LATER)
            if offset_flags & 1:  # first of several (an atomic fragment is a whole packet)
                fk = ident << 2 | FRAG_FIRST
        elif nxt == 51:  # AH counts its length in 4-byte units, minus 2
            nh = buf[t]
            t += (buf[t + 1] + 2) << 2
        else:
            nh = buf[t]
            t += (buf[t + 1] + 1) << 3
        nxt = nh
    return _transport(buf, t, lim, addrs, nxt, vlan, octets, fk)


def _transport(
    buf: Any, t: int, lim: int, addrs: bytes, proto: int, vlan: int, octets: int, fk: int
) -> Packet | int:
    """Ports (and TCP flags) of the transport header at ``t``; ``lim``: where the IP payload or the
    capture ends, whichever comes first."""
    if proto == 6:
        if lim - t < 14:
            return TRUNCATED_TRANSPORT
        ports, flags = _TCP(buf, t)
        return (addrs + ports, 6, vlan, octets, flags, fk)
    if proto == 17 or proto == 132:
        if lim - t < 4:
            return TRUNCATED_TRANSPORT
        return (addrs + _PORTS(buf, t)[0], proto, vlan, octets, 0, fk)
    if proto == 1 or proto == 58:
        if lim - t < 2:
            return TRUNCATED_TRANSPORT
        return (addrs + _ICMP_PORTS(*_ICMP(buf, t)), proto, vlan, octets, 0, fk)
    return (addrs + _NO_PORTS, proto, vlan, octets, 0, fk)
