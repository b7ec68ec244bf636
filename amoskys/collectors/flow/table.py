"""FlowTable: packets in, bidirectional flow records out, with timeouts driven by packet time.

Feed it frames with :meth:`FlowTable.packet` (a pcap reader, or a live capture ring, calls it once
per frame), call :meth:`advance` with the wall clock when packets stop coming (live capture only: a
file's time is its packets' time), and :meth:`flush` at the end. Emitted records and losses collect
in ``records`` and ``losses`` until the owner takes them with :meth:`drain`.

How it works, in the order a packet meets it:

- **Key**: the parser's directional key (source and destination address and port, as bytes) in a
  dictionary per (protocol, VLANs). A new flow enters under its key *and* under the reverse key,
  each pointing at one direction's counters, so a packet of either direction finds its counters
  with one lookup and no reordering; forward is the direction of the first packet. ICMP request
  types enter their partner (echo 8 ↔ reply 0, ...) as the reverse, as the Community ID pairs them;
  other ICMP messages (unreachable, time exceeded) are one-way flows of their own.
- **Fragments**: the first fragment of an IP packet registers its ports under (addresses, proto,
  VLAN, IP id); later fragments take them from there (they carry no transport header). A later
  fragment seen without its first joins a port-0 flow and counts in ``fragments_unmatched``.
- **Counters** per direction: packets, octets (IP length), TCP flags OR-ed — all deltas since the
  flow's previous record.
- **Timeouts** (IPFIX end reasons): a flow ends after ``idle`` without packets (TCP has its own
  idle), ``linger`` after an RST or after FINs from both sides (a SYN on such a flow starts a new
  one at once), or when evicted from a full table. A flow still alive after counting for ``active``
  sends an interim record (``final`` False, end reason ``active_timeout``) and counts on from zero.
  When an end is due, only the final record goes out (it carries everything since the last record).
- **Scheduling**: a flow sits in a one-second bucket for its next possible deadline; a sweep on
  each new second (of packet time) checks only the due buckets, so the per-packet cost does not grow
  with the table. Deadlines are also checked when a packet of the flow arrives, so records are exact
  regardless of when the sweep runs.
- **Bounded**: at ``max_flows`` a new flow first evicts the flow whose deadline is soonest (roughly
  the oldest), as a final record with end reason ``lack_of_resources``; evictions are summed into
  a ``FlowLoss`` at most every ``LOSS_REPORT_SECONDS`` of packet time.
- **Observers** (:meth:`add_observer`): passive watchers (discovery's ARP/DHCP) get copies of the
  frames they asked for — non-IP ethertypes and UDP ports — from the same packet path.
- **Starts**: when ``starts`` is a list (the owner sets it when a detector wants flow starts), each
  new flow appends ``(key, proto, vlan, first packet ts)`` to it, once, when the flow is created; the
  per-packet path does not change.
"""

from __future__ import annotations

import heapq
import struct
from typing import Any, Protocol

from amoskys.collectors.flow import parse as P
from amoskys.collectors.flow.records import (
    ACTIVE_TIMEOUT,
    END_OF_FLOW,
    FORCED_END,
    IDLE_TIMEOUT,
    LACK_OF_RESOURCES,
    FlowLoss,
    FlowRecordData,
)
from amoskys.community_id import ICMP4_PAIRS, ICMP6_PAIRS, community_id

NS = 1_000_000_000
INF = 1 << 126  # a deadline that never comes (still an int: comparisons stay int-vs-int)
LOSS_REPORT_SECONDS = 10
FRAGMENT_TIMEOUT_SECONDS = 30  # as Linux's ipfrag_time: a first fragment's ports are kept this long
MAX_FRAGMENTS = 65_536

# A direction's counters ("half"): [packets, octets, tcp flags, the flow]. Lists: the cheapest
# mutable records to index once per packet. (packet() uses the numbers literally: keep in step.)
_PACKETS, _OCTETS, _FLAGS, _FLOW = 0, 1, 2, 3
# Slots of a flow.
_FWD = 0  # the forward half
_REV = 1  # the reverse half; None for one-way flows (ICMP errors, a host talking to its own port)
_FIRST = 2  # first packet time counted in the current record, None after an interim record
_LAST = 3  # last packet time of the flow
_DUE = 4  # min(interim deadline, close deadline), checked on each packet; 0 while _FIRST is None
_IDLE = 5  # this flow's idle timeout (ns)
_STATE = 6  # FIN seen per direction, CLOSED
_SCHED = 7  # the bucket (second) the flow is scheduled in, -1 once it has ended
_CLOSE = 8  # the deadline after RST or both FINs (INF while open)
_KEY = 9  # forward key
_RKEY = 10  # reverse key (None for one-way flows)
_FLOWS = 11  # the dictionary holding the keys
_INFO = 12  # (proto, vlan, macs of the first packet)
_CID = 13  # Community ID, computed at the first record
_SERIAL = 14  # creation order (flush ends flows in this order)

_FIN_FWD, _FIN_REV, _CLOSED = 1, 2, 4
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_ICMP_PORTS = struct.Struct("!HH").pack


class PacketObserver(Protocol):
    """A passive watcher on the capture path (discovery watches ARP and DHCP through it).

    ``ethertypes``: non-IP Ethernet frames wanted (0x0806 for ARP); ``udp_ports``: IP/UDP packets
    from or to these ports (67, 68 for DHCP). ``observe`` gets the packet time, a copy of the whole
    frame and, for IP packets, the parsed tuple (see :mod:`parse`). It runs inside the packet loop:
    it must be quick and must not raise (an exception crashes the collector, which restarts).
    """

    ethertypes: frozenset[int]
    udp_ports: frozenset[int]

    def observe(self, ts_ns: int, frame: bytes, packet: P.Packet | None) -> None: ...


def reverse_key(key: bytes, proto: int) -> bytes | None:
    """The key of the other direction of a flow; None when the flow is one-way (an ICMP type that
    has no response type)."""
    if len(key) == 12:
        addrs = key[4:8] + key[0:4]
    else:
        addrs = key[16:32] + key[0:16]
    if proto == 1 or proto == 58:
        partner = (ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS).get(key[-3])
        if partner is None or key[-4]:
            return None
        return addrs + _ICMP_PORTS(partner, key[-2] << 8 | key[-1])
    return addrs + key[-2:] + key[-4:-2]


class FlowTable:
    """A bounded bidirectional flow table (see the module docstring for its rules)."""

    def __init__(
        self,
        *,
        tcp_idle_seconds: float = 300.0,
        idle_seconds: float = 60.0,
        active_seconds: float = 60.0,
        linger_seconds: float = 5.0,
        max_flows: int = 100_000,
        community_id_seed: int = 0,
        interface: str = "",
    ) -> None:
        if max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, got {max_flows}")
        for name, value in (
            ("tcp_idle_seconds", tcp_idle_seconds),
            ("idle_seconds", idle_seconds),
            ("active_seconds", active_seconds),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value}")
        if linger_seconds < 0:
            raise ValueError(f"linger_seconds must be >= 0, got {linger_seconds}")
        self.tcp_idle_ns = round(tcp_idle_seconds * NS)
        self.idle_ns = round(idle_seconds * NS)
        self.active_ns = round(active_seconds * NS)
        self.linger_ns = round(linger_seconds * NS)
        self.max_flows = max_flows
        self.seed = community_id_seed
        self.interface = interface
        #: emitted and not yet drained
        self.records: list[FlowRecordData] = []
        self.losses: list[FlowLoss] = []
        # counters (plain ints: the owner turns them into metrics per batch, never per packet)
        self.skipped: list[int] = [0] * len(P.REASONS)
        self.flows_created = 0
        self.evicted = 0
        self.fragments_unmatched = 0
        self._count = 0  # flows held
        self._tables: dict[int, dict[bytes, list[Any]]] = {}  # proto << 24 | vlan -> key -> half
        self._buckets: dict[int, list[list[Any]]] = {}
        self._heap: list[int] = []
        self._next_sweep = 0
        self._frags: dict[tuple[Any, ...], tuple[bytes, int]] = {}
        self._loss_count = 0
        self._loss_start = 0
        self._loss_end = 0
        self._observers: list[PacketObserver] = []
        self._link_watch: frozenset[int] = frozenset()
        self._udp_watch: frozenset[int] = frozenset()
        #: new flows since the owner last took them (None: not noted)
        self.starts: list[tuple[bytes, int, int, int]] | None = None

    def __len__(self) -> int:
        """Flows in the table now."""
        return self._count

    # ------------------------------------------------------------------ the packet path
    def packet(
        self, ts: int, buf: Any, off: int, end: int, parse: P.ParseFn = P.parse_ethernet, vlan: int = 0
    ) -> None:
        """Count the frame ``buf[off:end]`` seen at ``ts`` (UTC ns), decoded by ``parse``; ``vlan``: an
        outer VLAN id the capture took out of the frame (TPACKET_V3 metadata), 0 for none.

        The hot path: slot numbers are literal here (a global constant costs a lookup per use, and
        this runs once per packet) — half ``h``: 0 packets, 1 octets, 2 flags, 3 flow; flow ``f``:
        2 _FIRST, 3 _LAST, 4 _DUE, 5 _IDLE. A skip reason (an int) fails the tuple unpacking, which
        costs nothing until it happens.
        """
        if ts >= self._next_sweep:
            self._sweep(ts)
        p = parse(buf, off, end, vlan)
        # p is a Packet or a skip reason (int), told apart by the unpacking: mypy cannot follow, hence
        # the ignores on p below.
        try:
            key, proto, vlan, octets, flags, frag = p  # type: ignore[misc]
        except TypeError:
            self.skipped[p] += 1  # type: ignore[index]
            if p == P.NOT_IP and self._link_watch:
                self._observe_link(ts, buf, off, end, parse)
            return
        if frag:
            key = self._fragment_key(key, proto, vlan, frag, ts)
        flows = self._tables.get(proto << 24 | vlan)
        if flows is None:
            flows = self._tables[proto << 24 | vlan] = {}
        h = flows.get(key)
        if h is None:
            h = self._new(key, proto, vlan, flows, ts, buf, off, parse)
            f = h[3]
        else:
            f = h[3]
            if ts >= f[4] or ts - f[3] >= f[5]:
                h = self._due(h, ts, key, proto, vlan, flows, buf, off, parse)
                f = h[3]
        if flags:
            if flags & 0x07:  # FIN, SYN or RST
                h = self._tcp_control(h, flags, ts, key, proto, vlan, flows, buf, off, parse)
                f = h[3]
            h[2] |= flags
        h[0] += 1
        h[1] += octets
        if ts > f[3]:
            f[3] = ts
        elif ts < f[2]:
            f[2] = ts
        if self._udp_watch and proto == 17:
            self._observe_udp(ts, buf, off, end, p)  # type: ignore[arg-type]

    def advance(self, now_ns: int) -> None:
        """Apply every timeout due by ``now_ns`` (live capture calls this with the wall clock while
        no packets come; a file needs none)."""
        if now_ns >= self._next_sweep:
            self._sweep(now_ns)

    def flush(self, now_ns: int | None = None) -> None:
        """End every flow: ``end_of_flow`` for closed TCP connections, else ``forced_end`` (end of
        the file, or the collector stopping). Apply due timeouts first when ``now_ns`` is given."""
        if now_ns is not None:
            self.advance(now_ns)
        live = [h[_FLOW] for flows in self._tables.values() for h in flows.values() if h is h[_FLOW][_FWD]]
        live.sort(key=lambda f: f[_SERIAL])
        for f in live:
            self._end(f, END_OF_FLOW if f[_STATE] & _CLOSED else FORCED_END)
        self._tables.clear()
        self._buckets.clear()
        self._heap.clear()
        self._frags.clear()
        self._report_loss()

    def drain(self) -> tuple[list[FlowRecordData], list[FlowLoss]]:
        """Take the records and losses emitted since the last drain."""
        records, losses = self.records, self.losses
        self.records, self.losses = [], []
        return records, losses

    def add_observer(self, observer: PacketObserver) -> None:
        """Give ``observer`` the frames it watches for (see PacketObserver)."""
        self._observers.append(observer)
        self._link_watch = frozenset().union(*(o.ethertypes for o in self._observers))
        self._udp_watch = frozenset().union(*(o.udp_ports for o in self._observers))

    # ------------------------------------------------------------------ flows
    def _new(
        self,
        key: bytes,
        proto: int,
        vlan: int,
        flows: dict[bytes, list[Any]],
        ts: int,
        buf: Any,
        off: int,
        parse: P.ParseFn,
    ) -> list[Any]:
        """Start a flow whose first packet has ``key``; returns its forward half."""
        if self._count >= self.max_flows:
            self._evict(ts)
        idle = self.tcp_idle_ns if proto == 6 else self.idle_ns
        macs = bytes(buf[off : off + 12]) if parse is P.parse_ethernet else b""
        rkey = reverse_key(key, proto)
        if rkey == key:  # a host talking to its own port: one direction
            rkey = None
        f: list[Any]  # the slots _FWD ... _SERIAL
        f = [None, None, ts, ts, ts + self.active_ns, idle, 0, -1, INF, key, rkey, flows, None, None, 0]
        f[_INFO] = (proto, vlan, macs)
        f[_SERIAL] = self.flows_created
        fwd = f[_FWD] = [0, 0, 0, f]
        flows[key] = fwd
        if rkey is not None:
            flows[rkey] = f[_REV] = [0, 0, 0, f]
        self._count += 1
        self.flows_created += 1
        self._schedule(f, ts + min(idle, self.active_ns))
        if self.starts is not None:
            self.starts.append((key, proto, vlan, ts))
        return fwd

    def _due(
        self,
        h: list[Any],
        ts: int,
        key: bytes,
        proto: int,
        vlan: int,
        flows: dict[bytes, list[Any]],
        buf: Any,
        off: int,
        parse: P.ParseFn,
    ) -> list[Any]:
        """A packet arrived past one of its flow's deadlines (or after an interim record)."""
        f = h[_FLOW]
        if self._expire(f, ts):
            return self._new(key, proto, vlan, flows, ts, buf, off, parse)
        if f[_FIRST] is None:  # the first packet after an interim record opens the next period
            f[_FIRST] = ts
            due = ts + self.active_ns
            f[_DUE] = due if due < f[_CLOSE] else f[_CLOSE]
            if due < f[_SCHED] * NS:
                self._schedule(f, due)
        return h

    def _tcp_control(
        self,
        h: list[Any],
        flags: int,
        ts: int,
        key: bytes,
        proto: int,
        vlan: int,
        flows: dict[bytes, list[Any]],
        buf: Any,
        off: int,
        parse: P.ParseFn,
    ) -> list[Any]:
        f = h[_FLOW]
        state = f[_STATE]
        if state & _CLOSED:
            if flags & _SYN and not flags & _ACK:  # a new connection on the same ports
                self._end(f, END_OF_FLOW)
                return self._new(key, proto, vlan, flows, ts, buf, off, parse)
            return h
        if flags & _RST:
            state |= _CLOSED
        elif flags & _FIN:
            state |= _FIN_FWD if h is f[_FWD] else _FIN_REV
            if state & 3 == 3:
                state |= _CLOSED
        if state & _CLOSED:
            close = ts + self.linger_ns
            f[_CLOSE] = close
            if close < f[_DUE]:
                f[_DUE] = close
            if close < f[_SCHED] * NS:
                self._schedule(f, close)
        f[_STATE] = state
        return h

    def _expire(self, f: list[Any], now: int) -> bool:
        """Apply what is due for ``f`` at ``now``; True when the flow ended."""
        if now >= f[_CLOSE]:
            self._end(f, END_OF_FLOW)
            return True
        if now - f[_LAST] >= f[_IDLE]:
            self._end(f, IDLE_TIMEOUT)
            return True
        if f[_FIRST] is not None and now >= f[_DUE]:
            self._emit(f, ACTIVE_TIMEOUT, False)
            for h in (f[_FWD], f[_REV]):
                if h is not None:
                    h[_PACKETS] = h[_OCTETS] = h[_FLAGS] = 0
            f[_FIRST] = None
            f[_DUE] = 0  # the next packet takes the slow path and opens the next period
        return False

    def _end(self, f: list[Any], reason: int) -> None:
        self._emit(f, reason, True)
        f[_SCHED] = -1
        flows = f[_FLOWS]
        del flows[f[_KEY]]
        if f[_RKEY] is not None:
            del flows[f[_RKEY]]
        self._count -= 1

    def _emit(self, f: list[Any], reason: int, final: bool) -> None:
        src, dst, sp, dp = P.split_key(f[_KEY])
        proto, vlan, macs = f[_INFO]
        cid = f[_CID]
        if cid is None:
            cid = f[_CID] = community_id(src, dst, proto, sp, dp, self.seed)
        first = f[_FIRST]
        if first is None:  # a final record that counts no packet
            first = f[_LAST]
        fwd = f[_FWD]
        rev = f[_REV] or (0, 0, 0)
        self.records.append(
            FlowRecordData(
                src,
                dst,
                sp,
                dp,
                proto,
                vlan >> 12,
                vlan & 0xFFF,
                fwd[_PACKETS],
                fwd[_OCTETS],
                fwd[_FLAGS],
                rev[_PACKETS],
                rev[_OCTETS],
                rev[_FLAGS],
                first,
                f[_LAST],
                final,
                reason,
                cid,
                macs[6:12],
                macs[0:6],
                self.interface,
            )
        )

    def _evict(self, ts: int) -> None:
        """End the flow whose deadline is soonest, to make room (IPFIX lack of resources)."""
        heap, buckets = self._heap, self._buckets
        while heap:
            b = heap[0]
            entries = buckets[b]
            while entries:
                f = entries.pop()
                if f[_SCHED] == b:
                    self._end(f, LACK_OF_RESOURCES)
                    self.evicted += 1
                    if not self._loss_count:
                        self._loss_start = ts
                    self._loss_count += 1
                    self._loss_end = ts
                    return
            heapq.heappop(heap)
            del buckets[b]

    # ------------------------------------------------------------------ time
    def _schedule(self, f: list[Any], deadline: int) -> None:
        b = -(-deadline // NS)
        f[_SCHED] = b
        entries = self._buckets.get(b)
        if entries is None:
            self._buckets[b] = [f]
            heapq.heappush(self._heap, b)
        else:
            entries.append(f)

    def _sweep(self, now: int) -> None:
        """Check every flow whose bucket is due by ``now``; reschedule the ones still alive."""
        second = now // NS
        self._next_sweep = (second + 1) * NS
        heap, buckets = self._heap, self._buckets
        while heap and heap[0] <= second:
            b = heapq.heappop(heap)
            for f in buckets.pop(b):
                if f[_SCHED] != b:
                    continue  # rescheduled since, or ended
                if not self._expire(f, now):
                    self._schedule(f, self._deadline(f))
        if self._frags:
            cutoff = now - FRAGMENT_TIMEOUT_SECONDS * NS
            self._frags = {k: v for k, v in self._frags.items() if v[1] >= cutoff}
        if self._loss_count and now - self._loss_start >= LOSS_REPORT_SECONDS * NS:
            self._report_loss()

    @staticmethod
    def _deadline(f: list[Any]) -> int:
        """The soonest time at which something can happen to ``f`` without a packet."""
        deadline: int = f[_LAST] + f[_IDLE]
        due: int = f[_CLOSE] if f[_FIRST] is None else f[_DUE]
        return due if due < deadline else deadline

    def _report_loss(self) -> None:
        if self._loss_count:
            self.losses.append(FlowLoss(self._loss_count, self._loss_start, self._loss_end))
            self._loss_count = 0

    # ------------------------------------------------------------------ rare packets
    def _fragment_key(self, key: bytes, proto: int, vlan: int, frag: int, ts: int) -> bytes:
        addrs = key[:-4]
        fkey = (addrs, proto, vlan, frag >> 2)
        if frag & 3 == P.FRAG_FIRST:
            if len(self._frags) >= MAX_FRAGMENTS:
                self._frags.pop(next(iter(self._frags)))
            self._frags[fkey] = (key[-4:], ts)
            return key
        known = self._frags.get(fkey)
        if known is None:
            self.fragments_unmatched += 1
            return key
        return addrs + known[0]

    def _observe_link(self, ts: int, buf: Any, off: int, end: int, parse: P.ParseFn) -> None:
        if parse is not P.parse_ethernet:
            return
        link = P.link_payload(buf, off, end)
        # `link.__class__ is int` does not narrow the union for mypy as isinstance() would: hence the ignores
        if link.__class__ is int or link[0] not in self._link_watch:  # type: ignore[index]
            return
        frame = bytes(buf[off:end])
        for obs in self._observers:
            if link[0] in obs.ethertypes:  # type: ignore[index]
                obs.observe(ts, frame, None)

    def _observe_udp(self, ts: int, buf: Any, off: int, end: int, p: P.Packet) -> None:
        key = p[P.KEY]
        sport = key[-4] << 8 | key[-3]
        dport = key[-2] << 8 | key[-1]
        if sport not in self._udp_watch and dport not in self._udp_watch:
            return
        frame = bytes(buf[off:end])
        for obs in self._observers:
            if sport in obs.udp_ports or dport in obs.udp_ports:
                obs.observe(ts, frame, p)
