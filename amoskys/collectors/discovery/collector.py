"""DiscoveryCollector: who is on the LAN — ARP sweeps, passive ARP/DHCP, the neighbour table — as DeviceEvents.

Four sources feed one :class:`~amoskys.collectors.discovery.inventory.Inventory`:
- the **sweep** (:mod:`sweep`): ARP requests to every address of `subnets`, on `interface`, every
  `sweep_interval_seconds`;
- **passive ARP** on `interface`: the sweep's socket hears every ARP frame there, all the time;
- **passive ARP and DHCP on the capture path**: a watcher registered with ``ctx.packet_taps`` (the
  flow collector feeds it, see :mod:`tap`); frames wait in a bounded queue, drops are counted;
- the appliance's **neighbour table** (/proc/net/arp), every `neighbour_table_interval_seconds`.
Newly seen devices may be TCP-probed on `probe_ports` (opt-in, paced, see :mod:`probe`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections import deque
from collections.abc import Callable
from typing import Any

from amoskys.collectors.base import NotConfigured
from amoskys.collectors.context import CollectorContext
from amoskys.collectors.discovery import arp, dhcp, neighbour
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.discovery.inventory import (
    ARP_PASSIVE,
    ARP_SWEEP,
    DHCP,
    NEIGHBOUR_TABLE,
    Inventory,
)
from amoskys.collectors.discovery.metrics import DiscoveryMetrics
from amoskys.collectors.discovery.oui import PACKAGE, OuiRegistry
from amoskys.collectors.discovery.probe import TcpProbe
from amoskys.collectors.discovery.sweep import ArpPort, SweepError
from amoskys.collectors.taps import PacketTaps
from amoskys.collectors.workers import in_worker
from amoskys.errors import StartupError
from amoskys.proto import events_pb2

NO_INTERFACE = "no interface configured (set `interface`, and `subnets` to sweep, in [collectors.discovery])"
NEEDS_CAP_NET_RAW = "needs CAP_NET_RAW"
#: Passive frames waiting for the inventory; beyond this they are dropped (and counted).
PASSIVE_QUEUE = 4096
#: Newly seen devices waiting for the TCP probe; beyond this they are not probed.
PROBE_QUEUE = 1024
HOWS = (ARP_SWEEP, ARP_PASSIVE, DHCP, NEIGHBOUR_TABLE)
NS = 1_000_000_000
#: A device gone and unseen this long leaves the inventory's memory (at least twice gone_after).
FORGET_AFTER_NS = 7 * 86_400 * NS


class PassiveWatch:
    """The watcher discovery gives the capture path: ARP frames and DHCP packets into a bounded queue.

    ``observe`` runs inside the capture's packet loop: it only appends (never parses, never raises).
    """

    ethertypes = frozenset({arp.ETH_P_ARP})
    udp_ports = frozenset({67, 68})

    def __init__(self, maxlen: int = PASSIVE_QUEUE) -> None:
        self.frames: deque[tuple[int, bytes]] = deque()
        self.maxlen = maxlen
        self.dropped = 0
        self.wake = asyncio.Event()

    def observe(self, ts_ns: int, frame: bytes, packet: Any) -> None:
        if len(self.frames) >= self.maxlen:
            self.dropped += 1
            return
        self.frames.append((ts_ns, frame))
        self.wake.set()


class DiscoveryCollector:
    """A device inventory of the LAN from ARP sweeps, passive ARP/DHCP and the neighbour table."""

    name = "discovery"
    Config = DiscoveryConfig
    Metrics = DiscoveryMetrics

    def __init__(
        self, config: DiscoveryConfig, ctx: CollectorContext, *, taps: PacketTaps | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.networks: tuple[ipaddress.IPv4Network, ...] = config.networks()
        self.taps: PacketTaps | None = taps if taps is not None else ctx.packet_taps
        self.mode = "sweep" if self.networks else "passive"
        self.watch = PassiveWatch()
        self.inventory = Inventory(
            OuiRegistry(), gone_after_ns=round(config.gone_after_seconds * NS), interface=config.interface
        )
        self.port = ArpPort(config.interface, on_arp=self._own_arp)
        self.probe = TcpProbe(rate=config.probe_rate_per_second, timeout=config.probe_timeout_seconds)
        self.sweeps = 0
        self._pending: list[events_pb2.Envelope] = []
        self._probe_queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(PROBE_QUEUE)
        self._failing: set[str] = set()  # subnets whose last sweep failed (logged once)
        self._dropped_seen = 0
        self._unwatch: Callable[[], None] | None = None
        m = ctx.metrics.component(DiscoveryMetrics)
        self._m_requests = m.discovery_arp_requests
        self._m_replies = m.discovery_arp_replies
        self._m_sweep = m.discovery_sweep_duration
        self._m_devices = m.discovery_devices
        self._m_seen = {how: m.discovery_observations.labels(how) for how in HOWS}
        self._m_dropped = m.discovery_passive_dropped
        self._m_probes = m.discovery_probe_connects

    def self_check(self) -> str | None:
        """None when it can run here; else why not (shown as the disabled reason)."""
        if not self.config.interface:
            return NotConfigured(NO_INTERFACE)
        if not self.ctx.has_capability("CAP_NET_RAW"):
            return NEEDS_CAP_NET_RAW
        return None

    async def run(self) -> None:
        await self.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._drain_loop())
                tg.create_task(self._neighbour_loop())
                if self.networks:
                    tg.create_task(self._sweep_loop())
                if self.config.probe == "on":
                    tg.create_task(self._probe_loop())
        finally:
            self.stop()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load the OUI registry, open the ARP socket, join the capture path (what run() does first)."""
        await self._load_oui()
        try:
            self.port.open(self.ctx.clock.time_ns)
        except SweepError as err:
            # a missing privilege stays missing; an interface may come up later (a USB NIC, a bridge
            # made after boot): retry that with backoff
            raise StartupError(str(err), retry=err.errno not in (errno.EPERM, errno.EACCES)) from err
        if self.config.passive == "on" and self.taps is not None:
            self._unwatch = self.taps.watch(self.name, self.watch)
        self.ctx.log.info(
            "discovery_started",
            interface=self.config.interface,
            mac=self.port.mac.hex(":"),
            ip=str(ipaddress.IPv4Address(self.port.ip)),
            subnets=[str(n) for n in self.networks],
            passive_capture=self.taps.captures if self._unwatch is not None and self.taps else 0,
            oui_entries=len(self.inventory.oui),
        )

    def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self.port.close()

    async def _load_oui(self) -> None:
        path = self.config.oui_file
        try:
            self.inventory.oui = await asyncio.to_thread(OuiRegistry.load, path)
        except OSError as err:
            self.ctx.log.warning(
                "discovery_oui_registry_missing",
                path=path,
                error=err.strerror or str(err),
                hint=f"vendors stay empty; install it: sudo apt-get install -y {PACKAGE}",
            )

    # ------------------------------------------------------------------ loops
    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep_once()
            await self.ctx.clock.sleep(self.config.sweep_interval_seconds)

    async def sweep_once(self) -> dict[bytes, bytes]:
        """Sweep every subnet once and feed the inventory; every reply (ip → MAC) of this sweep.

        A subnet whose sweep fails is an error of that subnet (counted, logged once until it recovers);
        the other subnets are still swept.
        """
        c = self.config
        found: dict[bytes, bytes] = {}
        loop_started = asyncio.get_running_loop().time()
        for network in self.networks:
            subnet = str(network)
            try:
                result = await self.port.sweep(
                    network,
                    rate=c.rate_packets_per_second,
                    retries=c.retries,
                    reply_timeout=c.reply_timeout_seconds,
                )
            except SweepError as err:
                self.ctx.count_error(err)
                if subnet not in self._failing:
                    self._failing.add(subnet)
                    self.ctx.log.error(
                        "discovery_sweep_failed", interface=c.interface, subnet=subnet, error=str(err)
                    )
                continue
            if subnet in self._failing:
                self._failing.discard(subnet)
                self.ctx.log.info("discovery_sweep_recovered", interface=c.interface, subnet=subnet)
            self._m_requests.inc(result.sent)
            self._m_replies.inc(result.received)
            now = self.ctx.clock.time_ns()
            for ip, mac in result.replies.items():
                self._feed(now, mac, ARP_SWEEP, ip=str(ipaddress.IPv4Address(ip)))
            found.update(result.replies)
            self.ctx.log.debug(
                "discovery_sweep_done",
                subnet=subnet,
                sent=result.sent,
                replies=result.received,
                seconds=round(result.seconds, 3),
            )
        self.sweeps += 1
        self._m_sweep.set(asyncio.get_running_loop().time() - loop_started)
        now = self.ctx.clock.time_ns()
        self._pending.extend(self.inventory.expire(now))
        self._pending.extend(self.inventory.refresh(now, round(c.sweep_interval_seconds * NS)))
        self.inventory.forget(now, max(FORGET_AFTER_NS, 2 * self.inventory.gone_after_ns))
        await self.flush()
        return found

    async def _neighbour_loop(self) -> None:
        while True:
            await self.read_neighbours()
            now = self.ctx.clock.time_ns()
            self._pending.extend(self.inventory.expire(now))
            await self.flush()
            await self.ctx.clock.sleep(self.config.neighbour_table_interval_seconds)

    async def read_neighbours(self) -> None:
        """Feed the appliance's complete neighbour-table entries to the inventory (the table is read
        in a worker thread: a file read, off the loop)."""
        entries = await in_worker(neighbour.read)
        now = self.ctx.clock.time_ns()
        for entry in entries:
            self._feed(now, entry.mac, NEIGHBOUR_TABLE, ip=entry.ip, interface=entry.interface)

    async def _drain_loop(self) -> None:
        watch = self.watch
        while True:
            await watch.wake.wait()
            watch.wake.clear()
            self.drain()
            await self.flush()

    def drain(self) -> None:
        """Turn the passive frames waiting in the queue into inventory observations."""
        frames = self.watch.frames
        while frames:
            ts_ns, frame = frames.popleft()
            self.observe_frame(ts_ns, frame)
        if self.watch.dropped != self._dropped_seen:
            self._m_dropped.inc(self.watch.dropped - self._dropped_seen)
            self._dropped_seen = self.watch.dropped

    def observe_frame(self, ts_ns: int, frame: bytes) -> None:
        """One captured frame: ARP tells a sender's MAC and IP; DHCP a client's MAC, name and vendor class."""
        packet = arp.parse_frame(frame)
        if packet is not None:
            self._own_arp(ts_ns, packet)
            return
        info = dhcp.parse_frame(frame)
        if info is None:
            return
        ip = str(ipaddress.IPv4Address(info.ip)) if any(info.ip) else ""
        hostname = info.hostname if info.op == dhcp.BOOTREQUEST else ""
        vendor_class = info.vendor_class if info.op == dhcp.BOOTREQUEST else ""
        self._feed(ts_ns, info.client_mac, DHCP, ip=ip, hostname=hostname, vendor_class=vendor_class)

    def _own_arp(self, ts_ns: int, packet: arp.ArpPacket) -> None:
        # the sender of any ARP frame (an ARP probe's 0.0.0.0 gives the MAC alone); our own frames are not news
        if packet.sender_mac == self.port.mac:
            return
        self._feed(ts_ns, packet.sender_mac, ARP_PASSIVE, ip=str(ipaddress.IPv4Address(packet.sender_ip)))
        if self._pending:
            self.watch.wake.set()  # the drain loop publishes them

    def _feed(self, ts_ns: int, mac: bytes, how: str, **fields: str) -> None:
        self._m_seen[how].inc()
        events = self.inventory.observe(ts_ns, mac, how, **fields)
        if not events:
            return
        self._pending.extend(events)
        if self.config.probe == "on":
            for envelope in events:
                d = envelope.device
                if d.change == events_pb2.DeviceEvent.NEW and d.ip and not self._probe_queue.full():
                    self._probe_queue.put_nowait((d.mac, d.ip))

    async def flush(self) -> None:
        """Publish the events waiting, and update the device gauge."""
        self._m_devices.set(len(self.inventory.present()))
        if self._pending:
            events, self._pending = self._pending, []
            await self.ctx.publish_many(events)

    async def _probe_loop(self) -> None:
        ports = self.config.probe_ports
        while True:
            mac, ip = await self._probe_queue.get()
            before = self.probe.attempts
            open_ports = await self.probe.open_ports(ip, ports)
            self._m_probes.inc(self.probe.attempts - before)
            self._pending.extend(self.inventory.set_open_ports(mac, open_ports, self.ctx.clock.time_ns()))
            await self.flush()
