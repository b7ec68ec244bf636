"""The collector without a network: disabled reasons, config errors, the passive path through PacketTaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amoskys.collectors.discovery.collector import NEEDS_CAP_NET_RAW, NO_INTERFACE
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.taps import PacketTaps
from amoskys.config import from_mapping
from amoskys.errors import ConfigError
from amoskys.proto import events_pb2

from discovery_frames import arp_frame, dhcp_request
from discovery_harness import devices, make

MAC = bytes.fromhex("b827eb123456")


def test_without_an_interface_it_says_so_and_without_cap_net_raw_it_says_that(tmp_path: Path) -> None:
    collector, _ = make(tmp_path)
    assert collector.self_check() == NO_INTERFACE
    configured, _ = make(tmp_path, DiscoveryConfig(interface="eth0", subnets=["10.0.0.0/24"]))
    configured.ctx.has_capability = lambda name: name != "CAP_NET_RAW"
    assert configured.self_check() == NEEDS_CAP_NET_RAW == "needs CAP_NET_RAW"
    configured.ctx.has_capability = lambda name: True
    assert configured.self_check() is None and configured.mode == "sweep"


@pytest.mark.parametrize(
    ("subnet", "words"),
    [("10.0.0.0/8", "larger than a /16"), ("fe80::/64", "IPv6"), ("10.0.0.300/24", "not an IPv4 network")],
)
def test_a_bad_subnet_is_a_config_error_naming_it(subnet: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({"collectors": {"discovery": {"interface": "eth0", "subnets": [subnet]}}})
    assert subnet in str(info.value) and words in str(info.value)
    assert info.value.path == "collectors.discovery.subnets"


class FakeCapture:
    """Stands in for the flow collector: what it was given, and a way to push frames."""

    def __init__(self) -> None:
        self.observers: list[Any] = []

    def add_observer(self, observer: Any) -> None:
        self.observers.append(observer)

    def push(self, ts_ns: int, frame: bytes) -> None:
        etype = frame[12] << 8 | frame[13]
        for obs in self.observers:
            if etype in obs.ethertypes or etype == 0x0800:
                obs.observe(ts_ns, frame, None)


async def test_dhcp_and_arp_from_the_capture_path_reach_the_inventory(tmp_path: Path) -> None:
    taps = PacketTaps()
    capture = FakeCapture()
    disconnect = taps.connect(capture.add_observer)
    collector, sink = make(tmp_path, DiscoveryConfig(interface="lo"), taps=taps)
    unwatch = taps.watch("discovery", collector.watch)
    [relay] = capture.observers
    assert relay.ethertypes == {0x0806} and relay.udp_ports == {67, 68}
    capture.push(5, dhcp_request(MAC, hostname="kitchen-pi", vendor_class="udhcp 1.36.1"))
    capture.push(6, arp_frame(1, MAC, "10.0.0.50", b"\0" * 6, "10.0.0.1"))
    collector.drain()
    await collector.flush()
    new, seen = devices(sink)
    assert new.change == events_pb2.DeviceEvent.NEW and new.hostname == "kitchen-pi"
    assert new.dhcp_vendor_class == "udhcp 1.36.1" and list(new.seen_by) == ["dhcp"]
    assert seen.change == events_pb2.DeviceEvent.SEEN and seen.ip == "10.0.0.50"
    # a restarted collector swaps in behind the same relay; the capture never gets a second one
    unwatch()
    again, _ = make(tmp_path, DiscoveryConfig(interface="lo"), taps=taps)
    taps.watch("discovery", again.watch)
    assert len(capture.observers) == 1
    capture.push(7, dhcp_request(bytes.fromhex("b827eb000009"), hostname="other"))
    assert len(again.watch.frames) == 1 and not collector.watch.frames
    disconnect()
    assert taps.captures == 0


def test_a_full_passive_queue_drops_and_counts(tmp_path: Path) -> None:
    collector, _ = make(tmp_path, DiscoveryConfig(interface="lo"))
    collector.watch.maxlen = 2
    for ts in range(5):
        collector.watch.observe(ts, b"x", None)
    collector.drain()
    assert collector.watch.dropped == 3
    assert collector._m_dropped._value.get() == 3


@pytest.mark.needs_root
async def test_a_missing_interface_is_a_startup_error_naming_it_that_retries(tmp_path: Path) -> None:
    from amoskys.errors import StartupError

    from support import require_root

    require_root("the ARP socket is a raw socket: opening it needs CAP_NET_RAW")
    collector, _ = make(tmp_path, DiscoveryConfig(interface="amdnosuch0", subnets=["10.9.0.0/24"]))
    with pytest.raises(StartupError) as info:
        await collector.start()
    assert "'amdnosuch0'" in str(info.value) and info.value.retry


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_run_as_nobody_it_is_disabled_because_it_needs_cap_net_raw(tmp_path: Path) -> None:
    """A real unprivileged process (setpriv, as CI runs as root): self_check reads its own capabilities."""
    import subprocess
    import sys

    from support import ROOT, require_root, require_tool

    setpriv = require_tool("setpriv", "util-linux")
    require_root("this test drops root with setpriv: run it as root")
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from pathlib import Path\n"
        "from amoskys.collectors.discovery.config import DiscoveryConfig\n"
        "from discovery_harness import make\n"
        "c, _ = make(Path('/tmp'), DiscoveryConfig(interface='lo', subnets=['127.0.0.0/24']))\n"
        "print(c.self_check())\n"
    )
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [
            setpriv,
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            sys.executable,
            "-c",
            script,
            str(ROOT / "tests"),
            here,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "needs CAP_NET_RAW"
