"""Live capture (AF_PACKET, TPACKET_V3): golden pcaps replayed by tcpreplay over a veth pair give the
flows `amoskys flows read` gives on the same files; the kernel BPF filter drops what it should; an
overflowing ring shows as kernel drops (metrics and a LossReport); without CAP_NET_RAW it says so."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from amoskys.collectors.clock import SystemClock
from amoskys.collectors.flow import bpf
from amoskys.collectors.flow.capture import link_of
from amoskys.collectors.flow.cli import cmd_flows_read
from amoskys.collectors.flow.collector import NEEDS_CAP_NET_RAW, FlowCollector
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.flow.pcap import open_capture
from amoskys.collectors.flow_starts import FlowStarts
from amoskys.config import from_mapping
from amoskys.errors import CollectorError, ConfigError, FatalCollectorError, StartupError
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2

from flow_golden import case_input
from flow_veth import Veth, require_capture_rig, veth_pair
from support import ROOT, ListSink, eventually, make_context, require_root, require_tool

# Every golden case on Ethernet. linux_sll is a cooked capture (no Ethernet header to send), pcapng
# has a raw-IP interface beside its Ethernet one, truncated_and_garbage holds frames shorter than an
# Ethernet header: an Ethernet interface cannot send those as they are.
REPLAYED = (
    "fragments",
    "icmp",
    "interim",
    "ipv6",
    "misc_protocols",
    "qinq",
    "table_full",
    "tcp_fin",
    "tcp_half_open",
    "tcp_port_reuse",
    "tcp_rst",
    "udp",
    "vlan",
)


@pytest.fixture
def veth() -> Iterator[Veth]:
    require_capture_rig()
    with veth_pair() as pair:
        yield pair


def frames_in(path: Path) -> int:
    with open_capture(path) as reader:
        return sum(1 for _ in reader.frames())


def make(config: FlowConfig) -> tuple[FlowCollector, ListSink, Metrics]:
    sink = ListSink()
    ctx = make_context("flow", Path("/nonexistent"), publish=sink, clock=SystemClock())
    return FlowCollector(config, ctx), sink, ctx.metrics


@asynccontextmanager
async def running(collector: FlowCollector) -> AsyncIterator[asyncio.Task[None]]:
    """Run the collector until the block ends, then stop it (its flows end as forced_end)."""
    task = asyncio.create_task(collector.run())
    try:
        await eventually(
            lambda: task.done() or collector.capture.sock is not None,  # type: ignore[union-attr]
            within=15,
            what="the capture to open",
        )
        if task.done():
            task.result()
        yield task
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


def totals(flows: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[int]]:
    """Per flow key: packets and octets per direction and the OR of TCP flags over all its records
    (record boundaries depend on timing: replay time is not the file's time)."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for r in flows:
        key = (
            r["community_id"],
            r["src_addr"],
            r["src_port"],
            r["dst_addr"],
            r["dst_port"],
            r["protocol"],
            r["vlan"],
            r["inner_vlan"],
            r["src_mac"],
            r["dst_mac"],
        )
        t = out.setdefault(key, [0, 0, 0, 0, 0, 0])
        f, v = r["forward"], r["reverse"]
        t[0] += f["packets"]
        t[1] += f["octets"]
        t[2] |= f["tcp_flags"]
        t[3] += v["packets"]
        t[4] += v["octets"]
        t[5] |= v["tcp_flags"]
    return out


def read_flows(path: Path) -> list[dict[str, Any]]:
    out = io.StringIO()
    assert cmd_flows_read(path, "jsonl", out, io.StringIO(), config=FlowConfig()) == 0
    return [o for o in map(json.loads, out.getvalue().splitlines()) if "summary" not in o]


def as_json(envelopes: list[events_pb2.Envelope]) -> list[dict[str, Any]]:
    def mac(raw: bytes) -> str | None:
        return ":".join(f"{b:02x}" for b in raw) if raw else None

    out = []
    for e in envelopes:
        if e.WhichOneof("body") != "flow":
            continue
        f = e.flow
        out.append(
            {
                "community_id": f.community_id,
                "src_addr": f.src_addr,
                "src_port": f.src_port,
                "dst_addr": f.dst_addr,
                "dst_port": f.dst_port,
                "protocol": f.protocol,
                "vlan": f.vlan,
                "inner_vlan": f.inner_vlan,
                "src_mac": mac(f.src_mac),
                "dst_mac": mac(f.dst_mac),
                "interface": f.interface,
                "forward": {
                    "packets": f.forward.packets,
                    "octets": f.forward.octets,
                    "tcp_flags": f.forward.tcp_flags,
                },
                "reverse": {
                    "packets": f.reverse.packets,
                    "octets": f.reverse.octets,
                    "tcp_flags": f.reverse.tcp_flags,
                },
            }
        )
    return out


@pytest.mark.needs_root
@pytest.mark.needs_tool
@pytest.mark.parametrize("case", REPLAYED)
async def test_replayed_golden_pcap_gives_the_flows_of_flows_read(veth: Veth, case: str) -> None:
    pcap = case_input(case)
    collector, sink, _ = make(FlowConfig(interface=veth.capture))
    expected = frames_in(pcap)
    async with running(collector):
        await asyncio.to_thread(veth.replay, pcap)
        await eventually(
            lambda: collector.packets >= expected, within=15, what=f"{expected} frames of {case}"
        )
    live = as_json(sink)
    assert {r["interface"] for r in live} == {veth.capture}
    assert totals(live) == totals(read_flows(pcap))
    assert collector.packets == expected  # nothing else crossed the pair
    assert collector.kernel_drops == 0


@pytest.mark.needs_root
@pytest.mark.needs_tool
async def test_kernel_filter_drops_what_it_should(veth: Veth) -> None:
    pcaps = [case_input("tcp_fin"), case_input("udp"), case_input("icmp")]
    wanted = [
        r
        for p in pcaps
        for r in read_flows(p)
        if r["protocol"] == 17 and 53 not in (r["src_port"], r["dst_port"])
    ]
    expected = sum(r["forward"]["packets"] + r["reverse"]["packets"] for r in wanted)
    collector, sink, _ = make(FlowConfig(interface=veth.capture, filter="udp and not port 53"))
    async with running(collector):
        for pcap in pcaps:
            await asyncio.to_thread(veth.replay, pcap)
        await eventually(lambda: collector.packets >= expected, within=15, what=f"{expected} UDP frames")
        # the kernel counts what passed its filter: the other frames never reach the ring
        await eventually(lambda: collector.kernel_packets >= expected, within=5, what="the kernel's count")
    live = as_json(sink)
    assert wanted and totals(live) == totals(wanted)
    assert collector.packets == collector.kernel_packets == expected
    assert sum(frames_in(p) for p in pcaps) > expected


@pytest.mark.needs_root
@pytest.mark.needs_tool
async def test_overflowing_ring_shows_kernel_drops_on_metrics_and_as_a_loss_report(veth: Veth) -> None:
    collector, sink, metrics = make(FlowConfig(interface=veth.capture, ring_size_mib=1))
    async with running(collector):
        # The replay runs on the loop's own thread on purpose: nobody empties the 1 MiB ring while
        # ~70,000 frames arrive, so the kernel must drop.
        veth.replay(case_input("udp"), "--loop=10000")
        await eventually(
            lambda: any(e.WhichOneof("body") == "loss" for e in sink), within=15, what="a LossReport"
        )
    losses = [e.loss for e in sink if e.WhichOneof("body") == "loss"]
    dropped = sum(loss.count for loss in losses)
    assert dropped > 0 and {(x.what, x.where, x.reason) for x in losses} == {
        ("packets", "flow.capture", "kernel_drop")
    }
    assert all(x.window_start_ns < x.window_end_ns for x in losses)
    assert dropped == collector.kernel_drops
    assert collector.packets + dropped == collector.kernel_packets == 70_000
    text = metrics.render().decode()
    assert f"amoskys_flow_kernel_drops_total {float(dropped)}" in text
    assert "amoskys_flow_kernel_packets_total 70000.0" in text


def test_invalid_filter_is_a_config_error_quoting_libpcap() -> None:
    with pytest.raises(
        ConfigError, match=r"collectors.flow.filter: capture filter 'port http-ish': unknown port"
    ):
        from_mapping({"collectors": {"flow": {"interface": "lo", "filter": "port http-ish"}}}, source="test")


def test_filter_libpcap_rejects_at_start_is_fatal() -> None:
    collector, _, _ = make(FlowConfig(interface="lo"))
    collector.capture.filter_expression = "port http-ish"  # type: ignore[union-attr]  (a libpcap that disagrees)
    with pytest.raises(FatalCollectorError, match=r"capture on 'lo': capture filter 'port http-ish': "):
        asyncio.run(collector.run())


def test_filters_are_compiled_by_libpcap() -> None:
    program = bpf.compile_filter("udp port 53")
    assert bpf.instructions(program)[0] == (0x28, 0, 0, 12)  # ldh [12]: the ethertype first
    assert len(program) % 8 == 0 and len(program) > 8


def test_missing_interface_is_named() -> None:
    collector, _, _ = make(FlowConfig(interface="amoskys-none0"))
    with pytest.raises(StartupError, match=r"capture interface 'amoskys-none0': no such interface"):
        asyncio.run(collector.run())


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_unprivileged_capture_is_disabled_needing_cap_net_raw() -> None:
    require_root("runs as root to drop to `nobody` with setpriv")
    setpriv = require_tool("setpriv", "util-linux")
    script = (
        "import asyncio, sys\n"
        "sys.path.insert(0, 'tests/collectors/flow'); sys.path.insert(0, 'tests')\n"
        "from test_flow_capture import make\n"
        "from amoskys.collectors.flow.config import FlowConfig\n"
        "from amoskys.collectors.flow.capture import LiveCapture\n"
        "from amoskys.errors import StartupError\n"
        "c, _, _ = make(FlowConfig(interface='lo'))\n"
        "print(c.self_check())\n"
        "try:\n"
        "    LiveCapture('lo').open()\n"
        "except StartupError as err:\n"
        "    print(err, err.retry)\n"
    )
    result = subprocess.run(
        [
            setpriv,
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            sys.executable,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    check, opened = result.stdout.splitlines()
    assert check == NEEDS_CAP_NET_RAW
    assert opened.startswith("capture on 'lo': needs CAP_NET_RAW") and opened.endswith("False")


class Watcher:
    """A passive observer as discovery registers one: ARP frames and DHCP packets."""

    ethertypes = frozenset({0x0806})
    udp_ports = frozenset({67, 68})

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes, bool]] = []

    def observe(self, ts_ns: int, frame: bytes, packet: Any) -> None:
        self.seen.append((ts_ns, frame, packet is not None))


def arp_and_dhcp_pcap(path: Path) -> tuple[bytes, bytes]:
    """A pcap with one ARP request and one DHCP discover; returns both frames."""
    mac = bytes.fromhex("020000000001")
    arp = (
        b"\xff" * 6
        + mac
        + b"\x08\x06"
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
        + mac
        + bytes((10, 0, 0, 1))
        + bytes(6)
        + bytes((10, 0, 0, 2))
    ).ljust(60, b"\0")
    udp = struct.pack("!HHHH", 68, 67, 8 + 240, 0) + bytes(240)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes(4), b"\xff" * 4)
    dhcp = b"\xff" * 6 + mac + b"\x08\x00" + ip + udp
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate((arp, dhcp)):
        data += struct.pack("<IIII", 1_767_225_600, i, len(frame), len(frame)) + frame
    path.write_bytes(data)
    return arp, dhcp


@pytest.mark.needs_root
@pytest.mark.needs_tool
async def test_passive_observers_get_arp_and_dhcp_frames_from_the_wire(veth: Veth, tmp_path: Path) -> None:
    arp, dhcp = arp_and_dhcp_pcap(tmp_path / "arp_dhcp.pcap")
    collector, _, _ = make(FlowConfig(interface=veth.capture))
    watcher = Watcher()
    collector.add_observer(watcher)
    started = time.time_ns()
    async with running(collector):
        await asyncio.to_thread(veth.replay, tmp_path / "arp_dhcp.pcap")
        await eventually(lambda: len(watcher.seen) >= 2, within=15, what="the ARP and DHCP frames")
    assert [(frame, parsed) for _, frame, parsed in watcher.seen] == [(arp, False), (dhcp, True)]
    assert all(started <= ts <= time.time_ns() for ts, _, _ in watcher.seen)  # the kernel's receive time
    assert collector.interface == veth.capture


@pytest.mark.needs_root
@pytest.mark.needs_tool
async def test_interface_removed_while_capturing_is_an_error_naming_it(veth: Veth) -> None:
    collector, _, _ = make(FlowConfig(interface=veth.capture))
    task = asyncio.create_task(collector.run())
    await eventually(
        lambda: collector.capture is not None and collector.capture.sock is not None,
        within=15,
        what="the capture",
    )
    await asyncio.to_thread(subprocess.run, ["ip", "link", "del", veth.capture], check=True, timeout=30)
    with pytest.raises(CollectorError, match=rf"capture on '{veth.capture}': Network is down"):
        async with asyncio.timeout(10):
            await task


class Taps:
    """The appliance's packet taps as the flow collector sees them (discovery's ``PacketTaps``):
    ``connect(add_observer)`` hands over every watcher and returns the disconnect."""

    def __init__(self, *watchers: Any) -> None:
        self.watchers = watchers
        self.captures = 0
        self.flow_starts = FlowStarts()  # no detector takes them here

    def connect(self, add_observer: Any) -> Any:
        self.captures += 1
        for watcher in self.watchers:
            add_observer(watcher)

        def disconnect() -> None:
            self.captures -= 1

        return disconnect


@pytest.mark.needs_root
@pytest.mark.needs_tool
async def test_capture_joins_the_appliance_packet_taps_while_it_runs(veth: Veth, tmp_path: Path) -> None:
    arp, dhcp = arp_and_dhcp_pcap(tmp_path / "arp_dhcp.pcap")
    collector, _, _ = make(FlowConfig(interface=veth.capture))
    watcher = Watcher()
    taps = Taps(watcher)
    collector.ctx.packet_taps = taps  # type: ignore[attr-defined]  (the app gives every context one)
    async with running(collector):
        # the ring opens in a worker thread; the collector joins the taps when it resumes
        await eventually(lambda: taps.captures == 1, within=15, what="the capture to join the taps")
        await asyncio.to_thread(veth.replay, tmp_path / "arp_dhcp.pcap")
        await eventually(lambda: len(watcher.seen) >= 2, within=15, what="the frames through the taps")
    assert taps.captures == 0
    assert [frame for _, frame, _ in watcher.seen] == [arp, dhcp]


@contextmanager
def tun_device() -> Iterator[tuple[str, int]]:
    """A tun interface (raw IP, no link header), up with IPv6 off; it vanishes when its fd closes."""
    require_capture_rig()
    name = f"amt{os.getpid() % 100_000}"
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(
            fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000)
        )  # TUNSETIFF: TUN, NO_PI
        subprocess.run(["sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{name}/disable_ipv6"], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield name, fd
    finally:
        os.close(fd)


@pytest.mark.needs_root
@pytest.mark.needs_tool
async def test_raw_ip_interface_meters_like_the_file(tmp_path: Path) -> None:
    pcap = case_input("udp")
    with open_capture(pcap) as reader:
        packets = [frame[14:] for _, frame in reader.frames()]  # the IP packets, without Ethernet
    with tun_device() as (name, fd):
        collector, sink, _ = make(FlowConfig(interface=name, filter="udp"))
        async with running(collector):
            for packet in packets:
                os.write(fd, packet)  # the kernel receives it on the tun interface
            await eventually(lambda: collector.packets >= len(packets), within=15, what="the IP packets")
    expected = [{**r, "src_mac": None, "dst_mac": None} for r in read_flows(pcap)]
    assert totals(as_json(sink)) == totals(expected)
    assert collector.capture is not None and collector.capture.parse.__name__ == "parse_raw"


def test_unsupported_hardware_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "sit9").mkdir()
    (tmp_path / "sit9" / "type").write_text("776\n")
    with pytest.raises(
        StartupError, match=r"capture interface 'sit9': hardware type 776 is not supported"
    ) as err:
        link_of("sit9", tmp_path)
    assert err.value.retry is False
