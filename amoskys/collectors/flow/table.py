"""FlowTable: packets in, bidirectional flow records out, with timeouts driven by packet time.

Feed it frames with :meth:`FlowTable.packet` (a pcap reader, or a live capture ring, calls it once
per frame), call :meth:`advance` with the wall clock when packets stop coming (live capture only: a
file's time is its packets' time), and :meth:`flush` at the end. Emitted records and losses collect
in ``records`` and ``losses`` until the owner takes them with :meth:`drain`.

How it works, in the order a packet meets it:

- **Key**: the 5-tuple + VLANs in canonical order (lower address, then port, first), so both
  directions find the same flow; the flow remembers which side sent its first packet (forward).
  ICMP uses the Community ID port mapping (echo request 8 and reply 0 key alike; error messages are
  one-way flows of their own).
- **Fragments**: the first fragment of an IP packet registers its ports under (src, dst, proto, IP id,
  VLAN); later fragments take them from there (they carry no transport header). A later fragment
  seen without its first joins a port-0 flow and counts in ``fragments_unmatched``.
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
"""

from __future__ import annotations

import heapq
from typing import Any, Protocol

from amoskys.collectors.flow import parse as P
from amoskys.collectors.flow.community_id import ICMP4_PAIRS, ICMP6_PAIRS, community_id
from amoskys.collectors.flow.records import (
    ACTIVE_TIMEOUT,
    END_OF_FLOW,
    FORCED_END,
    IDLE_TIMEOUT,
    LACK_OF_RESOURCES,
    FlowLoss,
    FlowRecordData,
)

NS = 1_000_000_000
INF = 1 << 126  # a deadline that never comes (still an int: comparisons stay int-vs-int)
LOSS_REPORT_SECONDS = 10
FRAGMENT_TIMEOUT_SECONDS = 30  # as Linux's ipfrag_time: a first fragment's ports are kept this long
MAX_FRAGMENTS = 65_536

# Slots of a flow (a list: the cheapest mutable record to index once per packet).
_KEY = 0  # the table key
_LOW = 1  # True when the forward direction is the key's first endpoint
_FP, _FO, _FF, _RP, _RO, _RF = 2, 3, 4, 5, 6, 7  # forward/reverse packets, octets, tcp flags
_FIRST = 8  # first packet time counted in the current record, None after an interim record
_LAST = 9  # last packet time of the flow
_DUE = 10  # min(interim deadline, close deadline), checked on each packet; 0 while _FIRST is None
_IDLE = 11  # this flow's idle timeout (ns)
_STATE = 12  # FIN seen per direction, CLOSED
_SCHED = 13  # the bucket (second) the flow is scheduled in, -1 once it has ended
_CLOSE = 14  # the deadline after RST or both FINs (INF while open)
_INFO = 15  # (src, dst, sport, dport, macs) of the first packet: the record's orientation
_CID = 16  # Community ID, computed at the first record

_FIN_FWD, _FIN_REV, _CLOSED = 1, 2, 4
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


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
        self._flows: dict[tuple[Any, ...], list[Any]] = {}
        self._buckets: dict[int, list[list[Any]]] = {}
        self._heap: list[int] = []
        self._next_sweep = 0
        self._frags: dict[tuple[Any, ...], tuple[int, int, int]] = {}
        self._loss_count = 0
        self._loss_start = 0
        self._loss_end = 0
        self._observers: list[PacketObserver] = []
        self._link_watch: frozenset[int] = frozenset()
        self._udp_watch: frozenset[int] = frozenset()

    def __len__(self) -> int:
        """Flows in the table now."""
        return len(self._flows)

    # ------------------------------------------------------------------ the packet path
    def packet(self, ts: int, buf: Any, off: int, end: int, parse: P.ParseFn = P.parse_ethernet) -> None:
        """Count the frame ``buf[off:end]`` seen at ``ts`` (UTC ns), decoded by ``parse``."""
        if ts >= self._next_sweep:
            self._sweep(ts)
        p = parse(buf, off, end)
        if p.__class__ is int:
            self.skipped[p] += 1  # type: ignore[index]
            if p == P.NOT_IP and self._link_watch:
                self._observe_link(ts, buf, off, end, parse)
            return
        src, dst, sp, dp, proto, vlan, octets, flags, frag = p  # type: ignore[misc]
        if frag:
            sp, dp = self._fragment_ports(src, dst, sp, dp, proto, vlan, frag, ts)
        kd = dp
        if proto == 17:
            if self._udp_watch and (sp in self._udp_watch or dp in self._udp_watch):
                self._observe_udp(ts, buf, off, end, p)  # type: ignore[arg-type]
        elif proto == 1:
            kd = ICMP4_PAIRS.get(sp, dp | 0x10000)  # one-way types never pair with a reverse
        elif proto == 58:
            kd = ICMP6_PAIRS.get(sp, dp | 0x10000)
        if src < dst or (src == dst and sp <= kd):
            key = (src, dst, sp, kd, proto, vlan)
            low = True
        else:
            key = (dst, src, kd, sp, proto, vlan)
            low = False
        f = self._flows.get(key)
        if f is None:
            f = self._new(key, low, src, dst, sp, dp, ts, buf, off, parse)
        elif ts >= f[_DUE] or ts - f[_LAST] >= f[_IDLE]:
            f = self._due(f, ts, key, low, src, dst, sp, dp, buf, off, parse)
        if flags & 0x07:  # FIN, SYN or RST
            f = self._tcp_control(f, key, low, src, dst, sp, dp, flags, ts, buf, off, parse)
        if f[_LOW] is low:
            f[2] += 1
            f[3] += octets
            f[4] |= flags
        else:
            f[5] += 1
            f[6] += octets
            f[7] |= flags
        if ts > f[_LAST]:
            f[_LAST] = ts
        elif ts < f[_FIRST]:
            f[_FIRST] = ts

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
        for f in list(self._flows.values()):
            self._end(f, END_OF_FLOW if f[_STATE] & _CLOSED else FORCED_END)
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
        key: tuple[Any, ...],
        low: bool,
        src: bytes,
        dst: bytes,
        sp: int,
        dp: int,
        ts: int,
        buf: Any,
        off: int,
        parse: P.ParseFn,
    ) -> list[Any]:
        if len(self._flows) >= self.max_flows:
            self._evict(ts)
        idle = self.tcp_idle_ns if key[4] == 6 else self.idle_ns
        macs = b""
        if parse is P.parse_ethernet and len(buf) - off >= 12:
            macs = bytes(buf[off : off + 12])
        f = [key, low, 0, 0, 0, 0, 0, 0, ts, ts, ts + self.active_ns, idle, 0, -1, INF, None, None]
        f[_INFO] = (src, dst, sp, dp, macs)
        self._flows[key] = f
        self.flows_created += 1
        self._schedule(f, ts + min(idle, self.active_ns))
        return f

    def _due(
        self,
        f: list[Any],
        ts: int,
        key: tuple[Any, ...],
        low: bool,
        src: bytes,
        dst: bytes,
        sp: int,
        dp: int,
        buf: Any,
        off: int,
        parse: P.ParseFn,
    ) -> list[Any]:
        """A packet of ``f`` arrived past one of its deadlines (or after an interim record)."""
        if self._expire(f, ts):
            return self._new(key, low, src, dst, sp, dp, ts, buf, off, parse)
        if f[_FIRST] is None:  # the first packet after an interim record opens the next period
            f[_FIRST] = ts
            due = ts + self.active_ns
            f[_DUE] = due if due < f[_CLOSE] else f[_CLOSE]
            if due < f[_SCHED] * NS:
                self._schedule(f, due)
        return f

    def _tcp_control(
        self,
        f: list[Any],
        key: tuple[Any, ...],
        low: bool,
        src: bytes,
        dst: bytes,
        sp: int,
        dp: int,
        flags: int,
        ts: int,
        buf: Any,
        off: int,
        parse: P.ParseFn,
    ) -> list[Any]:
        state = f[_STATE]
        if state & _CLOSED:
            if flags & _SYN and not flags & _ACK:  # a new connection on the same ports
                self._end(f, END_OF_FLOW)
                return self._new(key, low, src, dst, sp, dp, ts, buf, off, parse)
            return f
        if flags & _RST:
            state |= _CLOSED
        elif flags & _FIN:
            state |= _FIN_FWD if f[_LOW] is low else _FIN_REV
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
        return f

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
            f[_FP] = f[_FO] = f[_FF] = f[_RP] = f[_RO] = f[_RF] = 0
            f[_FIRST] = None
            f[_DUE] = 0  # the next packet takes the slow path and opens the next period
        return False

    @staticmethod
    def _deadline(f: list[Any]) -> int:
        """The soonest time at which something can happen to ``f`` without a packet."""
        deadline = f[_LAST] + f[_IDLE]
        due = f[_CLOSE] if f[_FIRST] is None else f[_DUE]
        return due if due < deadline else deadline

    def _end(self, f: list[Any], reason: int) -> None:
        self._emit(f, reason, True)
        f[_SCHED] = -1
        del self._flows[f[_KEY]]

    def _emit(self, f: list[Any], reason: int, final: bool) -> None:
        src, dst, sp, dp, macs = f[_INFO]
        cid = f[_CID]
        if cid is None:
            cid = f[_CID] = community_id(src, dst, f[_KEY][4], sp, dp, self.seed)
        vlan = f[_KEY][5]
        first = f[_FIRST]
        if first is None:  # a final record that counts no packet
            first = f[_LAST]
        self.records.append(
            FlowRecordData(
                src,
                dst,
                sp,
                dp,
                f[_KEY][4],
                vlan >> 12,
                vlan & 0xFFF,
                f[_FP],
                f[_FO],
                f[_FF],
                f[_RP],
                f[_RO],
                f[_RF],
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
            self._frags = {k: v for k, v in self._frags.items() if v[2] >= cutoff}
        if self._loss_count and now - self._loss_start >= LOSS_REPORT_SECONDS * NS:
            self._report_loss()

    def _report_loss(self) -> None:
        if self._loss_count:
            self.losses.append(FlowLoss(self._loss_count, self._loss_start, self._loss_end))
            self._loss_count = 0

    # ------------------------------------------------------------------ rare packets
    def _fragment_ports(
        self, src: bytes, dst: bytes, sp: int, dp: int, proto: int, vlan: int, frag: int, ts: int
    ) -> tuple[int, int]:
        key = (src, dst, proto, frag >> 2, vlan)
        if frag & 3 == P.FRAG_FIRST:
            if len(self._frags) >= MAX_FRAGMENTS:
                self._frags.pop(next(iter(self._frags)))
            self._frags[key] = (sp, dp, ts)
            return sp, dp
        known = self._frags.get(key)
        if known is None:
            self.fragments_unmatched += 1
            return 0, 0
        return known[0], known[1]

    def _observe_link(self, ts: int, buf: Any, off: int, end: int, parse: P.ParseFn) -> None:
        if parse is not P.parse_ethernet:
            return
        link = P.link_payload(buf, off, end)
        if link.__class__ is int or link[0] not in self._link_watch:  # type: ignore[index]
            return
        frame = bytes(buf[off:end])
        for obs in self._observers:
            if link[0] in obs.ethertypes:  # type: ignore[index]
                obs.observe(ts, frame, None)

    def _observe_udp(self, ts: int, buf: Any, off: int, end: int, p: P.Packet) -> None:
        frame = bytes(buf[off:end])
        for obs in self._observers:
            if p[P.SPORT] in obs.udp_ports or p[P.DPORT] in obs.udp_ports:
                obs.observe(ts, frame, p)
