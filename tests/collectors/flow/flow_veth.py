"""Links for live-capture tests and traffic across them: a veth pair (the capture end in this namespace,
the sending end in a network namespace of its own), a bridge whose ports lead into namespaces, real
TCP and UDP conversations between sockets made in any of those namespaces, and the answers of a peer
behind a tun device. Everything made here is removed afterwards; tcpreplay sends a pcap through a
veth pair."""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
import os
import random
import re
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import require_root, require_tool, wait_for

_serial = itertools.count()
#: How long one step of a conversation may take (a connect, a reply, the last ACK) on a loaded box.
STEP_SECONDS = 30.0


@dataclass(frozen=True)
class Veth:
    """``capture``: the end the collector reads (here); ``peer`` lives in namespace ``netns``."""

    capture: str
    peer: str
    netns: str

    def replay(self, pcap: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """Send ``pcap`` out of the peer end with tcpreplay (``--topspeed`` unless told a rate)."""
        rate = [] if any(a.startswith(("--pps", "--mbps", "--multiplier")) for a in args) else ["--topspeed"]
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, "tcpreplay", "-q", *rate, *args, "-i", self.peer, str(pcap)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


def require_capture_rig() -> None:
    """Root (CI runs as root), ip and tcpreplay; skips otherwise, fails under CI=true (needs_root, needs_tool)."""
    require_tool("ip", "iproute2")
    require_tool("tcpreplay", "tcpreplay")
    require_root("live capture tests make network namespaces and veth pairs: they run as root")


def _ip(*args: str, netns: str = "") -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _quiet(name: str, netns: str = "") -> None:
    """No IPv6 on the interface: no router solicitations or MLD reports in the capture."""
    script = f"echo 1 > /proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "sh", "-c", script], check=True, timeout=30)


def _tag() -> str:
    return f"{os.getpid() % 100_000}x{next(_serial)}"


#: Where fresh_subnet picks from: the upper half of the benchmarking range 198.18.0.0/15 (RFC 2544);
#: the discovery tests take /24s of the lower half.
SUBNETS = ipaddress.IPv4Network("198.19.0.0/16")


def fresh_subnet() -> ipaddress.IPv4Network:
    """A /29 of :data:`SUBNETS` for one test's addresses in this namespace, picked at random among those
    no address here is in (concurrent test runs add theirs to the same namespace)."""
    listed = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    used = [ipaddress.IPv4Interface(field).network for field in re.findall(r" inet (\S+)", listed)]
    while True:
        net = ipaddress.IPv4Network((int(SUBNETS[0]) + 8 * random.randrange(SUBNETS.num_addresses // 8), 29))
        if not any(net.overlaps(other) for other in used):
            return net


@contextmanager
def veth_pair() -> Iterator[Veth]:
    """A fresh veth pair with unique names (up, IPv6 off); removed with its namespace afterwards."""
    tag = _tag()
    veth = Veth(capture=f"amc{tag}", peer=f"amp{tag}", netns=f"amoskys-flow-{tag}")
    try:
        _ip("netns", "add", veth.netns)
        _ip("link", "add", veth.capture, "type", "veth", "peer", "name", veth.peer, "netns", veth.netns)
        _quiet(veth.capture)
        _quiet(veth.peer, veth.netns)
        _ip("link", "set", veth.capture, "up")
        _ip("link", "set", veth.peer, "up", netns=veth.netns)
        yield veth
    finally:
        subprocess.run(["ip", "link", "del", veth.capture], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", veth.netns], capture_output=True, timeout=30)


def address_veth(veth: Veth) -> tuple[str, str]:
    """IPv4 addresses on both ends of ``veth`` (a fresh /29, see :func:`fresh_subnet`): (here, peer)."""
    net = fresh_subnet()
    here, peer = str(net[1]), str(net[2])
    _ip("addr", "add", f"{here}/29", "dev", veth.capture)
    _ip("addr", "add", f"{peer}/29", "dev", veth.peer, netns=veth.netns)
    return here, peer


@dataclass(frozen=True)
class Bridge:
    """``name``: a bridge here (the capture interface) with address ``address``; each of its ports is one
    end of a veth pair whose other end is ``eth0`` in namespace ``netns[i]``, with address ``hosts[i]``."""

    name: str
    address: str
    ports: tuple[str, ...]
    netns: tuple[str, ...]
    hosts: tuple[str, ...]


@contextmanager
def bridge_with_ports(count: int = 2) -> Iterator[Bridge]:
    """A bridge (STP off, IPv6 off, up) with ``count`` ports, each leading to a namespace of its own;
    the bridge and the namespaces share a fresh /29. Removed afterwards."""
    tag = _tag()
    net = fresh_subnet()
    bridge = Bridge(
        name=f"amb{tag}",
        address=str(net[1]),
        ports=tuple(f"amq{tag}p{i}" for i in range(count)),
        netns=tuple(f"amoskys-flow-{tag}p{i}" for i in range(count)),
        hosts=tuple(str(net[2 + i]) for i in range(count)),
    )
    try:
        _ip("link", "add", bridge.name, "type", "bridge", "stp_state", "0")
        _quiet(bridge.name)
        _ip("addr", "add", f"{bridge.address}/29", "dev", bridge.name)
        for port, netns, host in zip(bridge.ports, bridge.netns, bridge.hosts, strict=True):
            _ip("netns", "add", netns)
            _ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _quiet(port)
            _quiet("eth0", netns)
            _ip("link", "set", port, "master", bridge.name)
            _ip("addr", "add", f"{host}/29", "dev", "eth0", netns=netns)
            _ip("link", "set", port, "up")
            _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", bridge.name, "up")
        yield bridge
    finally:
        for port in bridge.ports:
            subprocess.run(["ip", "link", "del", port], capture_output=True, timeout=30)
        for netns in bridge.netns:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", bridge.name], capture_output=True, timeout=30)


# ---------------------------------------------------------------- sockets and conversations
_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def bound_sockets(netns: str, address: str, kinds: Sequence[int]) -> list[socket.socket]:
    """Sockets of ``kinds`` (SOCK_STREAM, SOCK_DGRAM) bound to ``address`` on a port the kernel picks,
    made in network namespace ``netns`` ("": this one). A thread of its own enters the namespace with
    setns(2), makes them and ends; a socket stays in the namespace it was made in, whoever uses it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            if netns:
                fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, _CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
                finally:
                    os.close(fd)
            for kind in kinds:
                sock = socket.socket(family, kind)
                made.append(sock)
                sock.bind((address, 0))
                sock.settimeout(STEP_SECONDS)
        except BaseException as err:
            failed.append(err)

    thread = threading.Thread(target=make, name=f"netns-{netns or 'here'}")
    thread.start()
    thread.join()
    if failed:
        for sock in made:
            sock.close()
        raise failed[0]
    return made


def endpoint(sock: socket.socket) -> tuple[str, int]:
    """(address, port) a socket is bound to (IPv6's flow info and scope left out)."""
    address, port = sock.getsockname()[:2]
    return address, port


@dataclass(frozen=True)
class Conversation:
    """A conversation between two sockets: ``client`` sent its first packet to ``server``."""

    proto: int  # 6 TCP, 17 UDP
    client: tuple[str, int]
    server: tuple[str, int]

    @property
    def capture_filter(self) -> str:
        """A libpcap filter for its packets and only those."""
        kind = "tcp" if self.proto == 6 else "udp"
        hosts = dict.fromkeys((self.client[0], self.server[0]))  # one when both are the same
        terms = [kind, *(f"host {h}" for h in hosts), f"port {self.client[1]}", f"port {self.server[1]}"]
        return "(" + " and ".join(terms) + ")"


def tcp_pair(
    client_netns: str, client_address: str, server_netns: str, server_address: str
) -> tuple[Conversation, socket.socket, socket.socket]:
    """A TCP client socket and a listening server socket, bound (ports from the kernel), not connected."""
    (client,) = bound_sockets(client_netns, client_address, [socket.SOCK_STREAM])
    (listener,) = bound_sockets(server_netns, server_address, [socket.SOCK_STREAM])
    listener.listen(1)
    return Conversation(6, endpoint(client), endpoint(listener)), client, listener


def udp_pair(
    client_netns: str, client_address: str, server_netns: str, server_address: str
) -> tuple[Conversation, socket.socket, socket.socket]:
    """Two bound UDP sockets (ports from the kernel): a client and a server."""
    (client,) = bound_sockets(client_netns, client_address, [socket.SOCK_DGRAM])
    (server,) = bound_sockets(server_netns, server_address, [socket.SOCK_DGRAM])
    return Conversation(17, endpoint(client), endpoint(server)), client, server


_TCP_CLOSE = 7  # tcp_info.tcpi_state once a socket is fully closed (linux/tcp.h TCP_CLOSE)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"{endpoint(sock)}: connection closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def tcp_talk(client: socket.socket, listener: socket.socket, sizes: Sequence[int]) -> None:
    """Connect ``client`` to ``listener``, echo a message of each of ``sizes`` bytes (≤ 32 KiB: both
    ends' buffers hold it), then close: the client first, the server after it. Returns once every
    segment has been delivered: the server's socket saw the last ACK (it is in TCP_CLOSE), so a packet
    socket on the path has seen it too. Closes both sockets."""
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(STEP_SECONDS)
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)  # our FIN; the socket stays open to read its state
                wait_for(
                    lambda: conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == _TCP_CLOSE,
                    timeout=STEP_SECONDS,
                    interval=0.005,
                    what=f"the last ACK at {endpoint(conn)}",
                )
        except BaseException as err:
            failed.append(err)

    server = threading.Thread(target=serve, name="tcp-echo")
    server.start()
    try:
        with client:
            client.connect(endpoint(listener))
            for size in sizes:
                client.sendall(b"a" * size)
                _recv_exactly(client, size)
            client.shutdown(socket.SHUT_WR)
            if client.recv(1):
                raise AssertionError("the echo server sent more than it was sent")
    finally:
        server.join(3 * STEP_SECONDS)
        listener.close()
    if failed:
        raise failed[0]


def udp_talk(client: socket.socket, server: socket.socket, sizes: Sequence[int]) -> None:
    """``client`` sends a datagram of each of ``sizes`` bytes, ``server`` echoes it back; returns once the
    client received every echo. Closes both sockets."""
    with client, server:
        to = endpoint(server)
        for size in sizes:
            client.sendto(b"u" * size, to)
            data, peer = server.recvfrom(65536)
            server.sendto(data, peer)
            if len(client.recv(65536)) != size:
                raise AssertionError(f"{to}: an echo of another size than {size}")


def udp_send(client: socket.socket, server: socket.socket, payload: bytes) -> None:
    """One datagram from ``client`` to ``server``; returns once the server received it. Closes both."""
    with client, server:
        client.sendto(payload, endpoint(server))
        if server.recv(65536) != payload:
            raise AssertionError(f"{endpoint(server)}: received another datagram")


# ---------------------------------------------------------------- raw IPv4 for tun peers
def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tun_reply(packet: bytes, echo_port: int) -> bytes | None:
    """What a peer behind a tun device answers to an IPv4 ``packet`` the host sent it: a UDP datagram to
    ``echo_port`` is echoed, a TCP SYN is refused (RST+ACK); None for anything else (kept)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    proto, src, dst = packet[9], packet[12:16], packet[16:20]
    l4 = packet[ihl:]
    if proto == 17 and len(l4) >= 8 and struct.unpack_from("!H", l4, 2)[0] == echo_port:
        sport, dport = struct.unpack_from("!HH", l4)
        reply = struct.pack("!HHHH", dport, sport, len(l4), 0) + l4[8:]  # UDP checksum 0: none (IPv4)
    elif proto == 6 and len(l4) >= 20 and l4[13] & 0x12 == 0x02:
        sport, dport, seq = struct.unpack_from("!HHI", l4)
        header = struct.pack("!HHIIBBHHH", dport, sport, 0, (seq + 1) & 0xFFFFFFFF, 0x50, 0x14, 0, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(header))
        reply = header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]
    else:
        return None
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(reply), 0, 0x4000, 64, proto, 0, dst, src)
    return ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:] + reply


def mac_of(netns: str, link: str) -> str:
    """The MAC address of `link` inside network namespace `netns`."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "ip", "-o", "link", "show", link],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    found = re.search(r"link/ether ([0-9a-f:]{17})", out)
    if not found:
        raise RuntimeError(f"no MAC address on {link} in {netns}: {out}")
    return found.group(1)
