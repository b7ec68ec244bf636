"""A veth pair for live-capture tests: the capture end in this namespace, the sending end in a network
namespace of its own (made and removed here), and tcpreplay to send a pcap through it."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import require_root, require_tool

_serial = itertools.count()


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


@contextmanager
def veth_pair() -> Iterator[Veth]:
    """A fresh veth pair with unique names (up, IPv6 off); removed with its namespace afterwards."""
    tag = f"{os.getpid() % 100_000}x{next(_serial)}"
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
