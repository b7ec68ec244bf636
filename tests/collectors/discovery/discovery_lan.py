"""A LAN in network namespaces for discovery tests: a bridge here, each host in a namespace of its own
behind a veth attached to the bridge, with the MAC and address the test gives. Made and removed here."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from support import IN_CI, require_root, require_tool

_serial = itertools.count()

#: Sends one frame (hex in argv[2]) out of interface argv[1] with an AF_PACKET socket.
_SEND = (
    "import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
    "s.bind((sys.argv[1], 0)); s.send(bytes.fromhex(sys.argv[2]))"
)


def require_lan_rig() -> None:
    """Root (CI runs as root), `ip`, and a kernel with bridges; skips otherwise, fails under CI=true
    (needs_root, needs_tool)."""
    require_tool("ip", "iproute2")
    require_root("discovery LAN tests make network namespaces, veth pairs and a bridge: they run as root")
    if not _bridges_work():
        problem = "this kernel cannot make a bridge (`ip link add … type bridge` failed)"
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)


def _bridges_work() -> bool:
    name = f"amdchk{os.getpid() % 100_000}"
    made = subprocess.run(["ip", "link", "add", name, "type", "bridge"], capture_output=True, timeout=30)
    subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=30)
    return made.returncode == 0


def ip(*args: str, netns: str = "") -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)} (netns {netns or '-'}): {done.stderr.strip()}")
    return done.stdout


def _no_ipv6(name: str, netns: str = "") -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    script = f"echo 1 > /proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    subprocess.run([*prefix, "sh", "-c", script], check=True, timeout=30)


@dataclass
class Host:
    netns: str
    mac: str
    ip: str
    link: str  # its veth end on the bridge (here)


@dataclass
class Lan:
    bridge: str
    prefix: str  # "198.18.7." — the subnet is prefix + "0/24", the bridge is prefix + "1"
    hosts: list[Host] = field(default_factory=list)

    @property
    def subnet(self) -> str:
        return self.prefix + "0/24"

    def add_host(self, mac: str, last_octet: int) -> Host:
        n = len(self.hosts)
        host = Host(
            f"amoskys-disc-{self.bridge}-{n}", mac, f"{self.prefix}{last_octet}", f"{self.bridge}h{n}"
        )
        self.hosts.append(host)
        ip("netns", "add", host.netns)
        ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _no_ipv6(host.link)
        _no_ipv6("eth0", host.netns)
        ip("link", "set", host.link, "master", self.bridge)
        ip("link", "set", host.link, "up")
        ip("link", "set", "eth0", "address", mac, netns=host.netns)
        ip("addr", "add", f"{host.ip}/24", "dev", "eth0", netns=host.netns)
        ip("link", "set", "eth0", "up", netns=host.netns)
        ip("link", "set", "lo", "up", netns=host.netns)
        return host

    def set_ip(self, host: Host, last_octet: int) -> None:
        """Move `host` to another address of the subnet."""
        ip("addr", "flush", "dev", "eth0", netns=host.netns)
        host.ip = f"{self.prefix}{last_octet}"
        ip("addr", "add", f"{host.ip}/24", "dev", "eth0", netns=host.netns)

    def remove(self, host: Host) -> None:
        """The host leaves: its namespace (and veth) are deleted."""
        subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host.link], capture_output=True, timeout=30)

    def send(self, host: Host, frame: bytes) -> None:
        """Send one raw Ethernet frame out of `host`'s eth0."""
        subprocess.run(
            ["ip", "netns", "exec", host.netns, sys.executable, "-c", _SEND, "eth0", frame.hex()],
            check=True,
            capture_output=True,
            timeout=30,
        )


@contextmanager
def lan() -> Iterator[Lan]:
    """A bridge with an address in a /24 of 198.18.0.0/15 (benchmarking space) unique to this process."""
    n = next(_serial)
    tag = f"{os.getpid() % 100_000}{n}"
    third = (os.getpid() + 37 * n) % 250 + 1
    net = Lan(bridge=f"amd{tag}"[:11], prefix=f"198.18.{third}.")
    try:
        ip("link", "add", net.bridge, "type", "bridge")
        _no_ipv6(net.bridge)
        ip("addr", "add", f"{net.prefix}1/24", "dev", net.bridge)
        ip("link", "set", net.bridge, "up")
        yield net
    finally:
        for host in net.hosts:
            net.remove(host)
        subprocess.run(["ip", "link", "del", net.bridge], capture_output=True, timeout=30)
