"""Live capture on each kind of link, against tshark capturing the same traffic on the same interface:
loopback (where every frame reaches a packet socket twice: as sent and as received), a veth end that
sends (there the host's own frames come only as sent), a bridge with ports in namespaces, a tun
device. Flow by flow, packets, IP octets and TCP flags per direction equal `amoskys flows read` of
tshark's capture file (itself checked against tshark in test_flow_peers.py).

Each test waits for a marker datagram sent after its traffic to show in both captures before stopping
them, so neither misses the end of the traffic."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from test_flow_capture import as_json, make, read_flows, running, totals, tun_device

from amoskys.collectors.flow.collector import FlowCollector
from amoskys.collectors.flow.config import FlowConfig
from amoskys.metrics import Metrics

from flow_peers import TsharkCapture
from flow_veth import (
    STEP_SECONDS,
    Bridge,
    Conversation,
    Veth,
    address_veth,
    bound_sockets,
    bridge_with_ports,
    endpoint,
    fresh_subnet,
    tcp_pair,
    tcp_talk,
    tun_reply,
    udp_pair,
    udp_send,
    udp_talk,
    veth_pair,
)
from support import eventually, require_root, require_tool

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tool]  # namespaces, links; ip and tshark

Talk = Callable[[], None]


def require_rig() -> None:
    require_tool("ip", "iproute2")
    require_tool("tshark", "tshark")
    require_root("captures on live interfaces and makes namespaces, bridges and tun devices")


class MarkerWatcher:
    """A passive observer that counts the frames carrying ``token`` on UDP port ``port``."""

    ethertypes: frozenset[int] = frozenset()

    def __init__(self, port: int, token: bytes) -> None:
        self.udp_ports = frozenset({port})
        self.token = token
        self.seen = 0

    def observe(self, ts_ns: int, frame: bytes, packet: Any) -> None:
        if self.token in frame:
            self.seen += 1


@dataclass
class Metered:
    """The same traffic as the collector metered it and as `flows read` meters tshark's capture of it."""

    ours: list[dict[str, Any]]
    theirs: list[dict[str, Any]]
    collector: FlowCollector
    metrics: Metrics
    marker_frames: int  # frames carrying the marker that reached the flow table


async def meter_beside_tshark(
    tmp_path: Path,
    interface: str,
    talks: list[Talk],
    marker: Conversation,
    send_marker: Callable[[bytes], None],
    capture_filter: str = "",
) -> Metered:
    """Capture on ``interface`` with tshark and the collector (both with ``capture_filter``), run
    ``talks`` one after the other, then ``send_marker`` (a UDP datagram of ``marker``); once both
    captures hold the marker, stop both and return what each metered."""
    token = b"amoskys-marker-" + os.urandom(8).hex().encode()
    tshark = TsharkCapture(interface, tmp_path / "tshark.pcapng", capture_filter)
    await asyncio.to_thread(tshark.__enter__)
    try:
        collector, sink, metrics = make(FlowConfig(interface=interface, filter=capture_filter))
        watcher = MarkerWatcher(marker.client[1], token)
        collector.add_observer(watcher)
        async with running(collector):
            for talk in talks:
                await asyncio.to_thread(talk)
            await asyncio.to_thread(send_marker, token)
            await eventually(lambda: watcher.seen, within=30, what="the marker in the collector")
            await eventually(lambda: tshark.holds(token), within=30, what="the marker in tshark's capture")
    finally:
        await asyncio.to_thread(tshark.__exit__, None, None, None)
    return Metered(as_json(sink), read_flows(tshark.path), collector, metrics, watcher.seen)


def conversation_of(record: dict[str, Any]) -> tuple[int, tuple[str, int], tuple[str, int]]:
    return (
        record["protocol"],
        (record["src_addr"], record["src_port"]),
        (record["dst_addr"], record["dst_port"]),
    )


def flows(records: list[dict[str, Any]]) -> set[tuple[int, tuple[str, int], tuple[str, int]]]:
    return {conversation_of(r) for r in records}


def expected(conversations: list[Conversation]) -> set[tuple[int, tuple[str, int], tuple[str, int]]]:
    return {(c.proto, c.client, c.server) for c in conversations}


def packets(records: list[dict[str, Any]]) -> int:
    return sum(r["forward"]["packets"] + r["reverse"]["packets"] for r in records)


def assert_same_flows(metered: Metered, conversations: list[Conversation], marker: Conversation) -> None:
    """Both captures hold a flow for each of the test's conversations (and the marker), each with
    packets both ways (the marker: one way), and ours equal tshark's: packets, IP octets and TCP flags
    per direction, summed over the flow's records. Other flows (the kernel's own IGMP reports on a link
    that came up, timed by the kernel: one capture may start or stop around one) are left out."""
    wanted = expected([*conversations, marker])
    ours = [r for r in metered.ours if conversation_of(r) in wanted]
    theirs = [r for r in metered.theirs if conversation_of(r) in wanted]
    assert flows(ours) == wanted
    assert flows(theirs) == wanted
    assert totals(ours) == totals(theirs)
    for r in ours:
        if conversation_of(r) != (marker.proto, marker.client, marker.server):
            assert r["forward"]["packets"] and r["reverse"]["packets"], r


#: (client namespace, client address, server namespace, server address, TCP conversations, UDP
#: conversations); each conversation is the list of its message sizes; namespace "" is this one
Plan = tuple[str, str, str, str, tuple[list[int], ...], tuple[list[int], ...]]


def prepare(plan: list[Plan]) -> tuple[list[Conversation], list[Talk]]:
    """The conversations of ``plan`` with their sockets bound now (ports from the kernel, so a capture
    filter can name them), and a talk for each, to run once the captures run."""
    conversations: list[Conversation] = []
    talks: list[Talk] = []
    for client_ns, client_ip, server_ns, server_ip, tcp, udp in plan:
        for sizes in tcp:
            conv, client, listener = tcp_pair(client_ns, client_ip, server_ns, server_ip)
            conversations.append(conv)
            talks.append(partial(tcp_talk, client, listener, sizes))
        for sizes in udp:
            conv, client, server = udp_pair(client_ns, client_ip, server_ns, server_ip)
            conversations.append(conv)
            talks.append(partial(udp_talk, client, server, sizes))
    return conversations, talks


# ---------------------------------------------------------------- loopback
def loopback_addresses() -> list[str]:
    """127.0.0.1, and ::1 when this host has IPv6 on its loopback."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return ["127.0.0.1"]
    return ["127.0.0.1", "::1"]


async def test_loopback_counts_each_packet_once_as_tshark_does(tmp_path: Path) -> None:
    require_rig()
    tcp = ([1], [1400, 20_000], [32_768, 5, 9000])
    udp = ([20], [512, 1400, 8000])
    conversations, talks = prepare([("", address, "", address, tcp, udp) for address in loopback_addresses()])
    marker, marker_client, marker_server = udp_pair("", "127.0.0.1", "", "127.0.0.1")
    # Other tests talk on lo too: both captures see only this test's conversations.
    capture_filter = " or ".join(c.capture_filter for c in [*conversations, marker])

    metered = await meter_beside_tshark(
        tmp_path, "lo", talks, marker, partial(udp_send, marker_client, marker_server), capture_filter
    )

    assert_same_flows(metered, conversations, marker)
    assert flows(metered.ours) == expected([*conversations, marker])  # the filter let nothing else in
    collector = metered.collector
    assert collector.packets == packets(metered.ours)
    assert f"amoskys_flow_packets_total {float(collector.packets)}" in metered.metrics.render().decode()
    assert metered.marker_frames == 1
    # the kernel hands the socket both copies of each frame; the sent one is skipped
    assert collector.capture is not None and collector.capture.outgoing_skipped == collector.packets
    assert collector.kernel_packets == 2 * collector.packets
    assert collector.kernel_drops == 0


# ---------------------------------------------------------------- veth, bridge, tun
@pytest.fixture
def veth() -> Iterator[tuple[Veth, str, str]]:
    """A veth pair with IPv4 addresses: (pair, address here, address of the peer end)."""
    require_rig()
    with veth_pair() as pair:
        yield (pair, *address_veth(pair))


async def test_veth_end_that_sends_counts_the_hosts_own_frames_as_tshark_does(
    veth: tuple[Veth, str, str], tmp_path: Path
) -> None:
    pair, here, peer = veth
    conversations, talks = prepare(
        [
            ("", here, pair.netns, peer, ([1], [1400, 20_000]), ([20, 1400],)),  # the host sends first
            (pair.netns, peer, "", here, ([500],), ([100],)),  # the host answers
        ]
    )
    marker, marker_client, marker_server = udp_pair("", here, pair.netns, peer)

    metered = await meter_beside_tshark(
        tmp_path, pair.capture, talks, marker, partial(udp_send, marker_client, marker_server)
    )

    assert_same_flows(metered, conversations, marker)
    assert metered.marker_frames == 1  # it was only ever sent from here: an outgoing frame
    assert metered.collector.capture is not None and metered.collector.capture.outgoing_skipped == 0


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    require_rig()
    with bridge_with_ports(2) as made:
        yield made


async def test_bridge_counts_traffic_between_its_ports_and_its_own_as_tshark_does(
    bridge: Bridge, tmp_path: Path
) -> None:
    (one, two), (ip_one, ip_two) = bridge.netns, bridge.hosts
    conversations, talks = prepare(
        [
            (one, ip_one, two, ip_two, ([1000, 30_000], [1]), ([200, 1400],)),  # port to port
            (two, ip_two, one, ip_one, ([64],), ()),
            ("", bridge.address, one, ip_one, ([3000],), ([50],)),  # the bridge's own (outgoing) frames
        ]
    )
    marker, marker_client, marker_server = udp_pair(one, ip_one, two, ip_two)

    metered = await meter_beside_tshark(
        tmp_path, bridge.name, talks, marker, partial(udp_send, marker_client, marker_server)
    )

    assert_same_flows(metered, conversations, marker)
    assert metered.marker_frames == 1


class TunPeer:
    """The far end of a tun device, in a thread: it answers what the host sends through the device
    (UDP to ``echo_port`` echoed, a TCP SYN refused; see ``flow_veth.tun_reply``) until stopped."""

    def __init__(self, fd: int, echo_port: int) -> None:
        self.fd = fd
        self.echo_port = echo_port
        self.stopping = threading.Event()
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, name="tun-peer")

    def __enter__(self) -> TunPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(STEP_SECONDS)
        if self.failed:
            raise self.failed[0]

    def _serve(self) -> None:
        try:
            while not self.stopping.is_set():
                readable, _, _ = select.select([self.fd], [], [], 0.05)
                if readable:
                    reply = tun_reply(os.read(self.fd, 65536), self.echo_port)
                    if reply is not None:
                        os.write(self.fd, reply)
        except BaseException as err:
            self.failed.append(err)


def tun_talk(here: str, peer: str, echo_port: int) -> list[Conversation]:
    """From ``here`` through the tun device: UDP datagrams echoed by the peer, a refused TCP connection."""
    (udp, tcp) = bound_sockets("", here, [socket.SOCK_DGRAM, socket.SOCK_STREAM])
    conversations = [
        Conversation(17, endpoint(udp), (peer, echo_port)),
        Conversation(6, endpoint(tcp), (peer, echo_port)),
    ]
    with udp, tcp:
        for size in (30, 700, 1400):
            udp.sendto(b"t" * size, (peer, echo_port))
            if len(udp.recv(65536)) != size:
                raise AssertionError("the tun peer echoed another size")
        with pytest.raises(ConnectionRefusedError):
            tcp.connect((peer, echo_port))
    return conversations


@pytest.fixture
def tun() -> Iterator[tuple[str, int, str, str]]:
    """A tun device with an IPv4 address: (name, its fd, address here, address of the far end)."""
    require_rig()
    net = fresh_subnet()
    here, peer = str(net[1]), str(net[2])
    with tun_device() as (name, fd):
        subprocess.run(["ip", "addr", "add", f"{here}/29", "dev", name], check=True, timeout=30)
        yield name, fd, here, peer


async def test_tun_device_counts_both_directions_as_tshark_does(
    tun: tuple[str, int, str, str], tmp_path: Path
) -> None:
    name, fd, here, peer = tun
    echo_port, discard_port = 7, 9  # services of the simulated far end
    (marker_client,) = bound_sockets("", here, [socket.SOCK_DGRAM])
    marker = Conversation(17, endpoint(marker_client), (peer, discard_port))
    conversations: list[Conversation] = []

    def talk() -> None:
        conversations.extend(tun_talk(here, peer, echo_port))

    def send_marker(token: bytes) -> None:
        with marker_client:
            marker_client.sendto(token, (peer, discard_port))  # the far end keeps it

    with TunPeer(fd, echo_port):
        metered = await meter_beside_tshark(tmp_path, name, [talk], marker, send_marker)

    assert_same_flows(metered, conversations, marker)
    assert {r["src_mac"] for r in metered.ours} == {None}  # raw IP: no link header
    assert metered.marker_frames == 1
