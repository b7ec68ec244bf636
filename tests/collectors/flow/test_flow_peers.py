"""Peer cross-check: on the same captures, softflowd (via nfcapd and nfdump) and tshark's conversation
statistics count the same flows, packets and octets per flow and direction as we do.

The differences that are on purpose (flow README, "Compared with softflowd and tshark") are checked
to be exactly those. In CI every tool must be there (scripts/sysdeps.sh installs them).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from flow_golden import case_input
from flow_peers import Parts, our_packets_by_5tuple, our_parts, softflowd_parts, tshark_packets
from flow_traffic import write

SOFTFLOWD_CASES = [
    "tcp_fin",
    "tcp_rst",
    "tcp_half_open",
    "udp",
    "icmp",
    "ipv6",
    "vlan",
    "misc_protocols",
    "linux_sll",
    "interim",
    "table_full",
]
TSHARK_CASES = [*SOFTFLOWD_CASES, "qinq", "tcp_port_reuse", "truncated_and_garbage", "pcapng"]

pytestmark = pytest.mark.needs_tool  # softflowd, nfcapd and nfdump, tshark


def diff(ours: dict, theirs: dict) -> dict:  # type: ignore[type-arg]
    return {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)}


def totals(parts: Parts, key_len: int) -> dict[tuple[object, ...], tuple[int, int]]:
    """Packets and octets per direction, summed over flows whose key agrees in its first fields."""
    out: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0])
    for key, flows in parts.items():
        for packets, octets in flows:
            out[key[:key_len]][0] += packets
            out[key[:key_len]][1] += octets
    return {k: (v[0], v[1]) for k, v in out.items()}


@pytest.fixture(scope="module")
def random_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50,000 packets of random conversations (TCP, UDP, ICMP; IPv4, IPv6; some 802.1Q-tagged)."""
    path = tmp_path_factory.mktemp("traffic") / "random.pcap"
    write(path, 50_000, seed=20261127, concurrent=800)
    return path


@pytest.mark.parametrize("case", SOFTFLOWD_CASES)
def test_softflowd_counts_the_same_flows_packets_and_octets(case: str, tmp_path: Path) -> None:
    ours, _ = our_parts(case_input(case))
    theirs = softflowd_parts(case_input(case), tmp_path)
    assert ours and diff(ours, theirs) == {}


def test_softflowd_agrees_on_random_traffic(random_pcap: Path, tmp_path: Path) -> None:
    ours, records = our_parts(random_pcap)
    theirs = softflowd_parts(random_pcap, tmp_path)
    assert len(records) > 2000
    assert diff(ours, theirs) == {}


@pytest.mark.parametrize("case", TSHARK_CASES)
def test_tshark_conversations_count_the_same_packets(case: str) -> None:
    _, records = our_parts(case_input(case))
    assert diff(our_packets_by_5tuple(records), tshark_packets(case_input(case))) == {}


def test_tshark_agrees_on_random_traffic(random_pcap: Path) -> None:
    _, records = our_parts(random_pcap)
    theirs = tshark_packets(random_pcap)
    assert len(theirs) > 2000
    assert diff(our_packets_by_5tuple(records), theirs) == {}


# ---------------------------------------------------------------- the differences on purpose
def test_fragments_softflowd_puts_later_fragments_in_a_portless_flow_we_join_them(tmp_path: Path) -> None:
    ours, _ = our_parts(case_input("fragments"))
    theirs = softflowd_parts(case_input("fragments"), tmp_path)
    ported = ("10.0.0.1", "10.0.0.2", 17, 9000, 9001, 0)
    assert ours[ported] == [(3, 3068)] and theirs[ported] == [(1, 1220)]  # the first fragment only
    assert theirs[("10.0.0.1", "10.0.0.2", 17, 0, 0, 0)] == [(2, 1848)]  # the later two
    # a later IPv6 fragment is protocol 0 to softflowd (it stops at the fragment header)
    assert theirs[("2001:db8::a", "2001:db8::b", 0, 0, 0, 0)] == [(1, 824)]
    assert totals(ours, 2) == totals(theirs, 2)  # per address pair: all the same


def test_port_reuse_softflowd_merges_a_new_connection_into_a_closed_one(tmp_path: Path) -> None:
    ours, _ = our_parts(case_input("tcp_port_reuse"))
    theirs = softflowd_parts(case_input("tcp_port_reuse"), tmp_path)
    forward = ("10.0.0.1", "10.0.0.2", 6, 40004, 80, 0)
    assert ours[forward] == [(6, 340), (6, 340)] and theirs[forward] == [(12, 680)]
    assert totals(ours, 6) == totals(theirs, 6)


def test_qinq_softflowd_skips_802_1ad_frames_we_meter_them(tmp_path: Path) -> None:
    ours, _ = our_parts(case_input("qinq"))
    assert softflowd_parts(case_input("qinq"), tmp_path) == {}
    assert ours[("10.0.0.1", "10.0.0.2", 17, 7000, 8000, 100)] == [(1, 92), (1, 92)]
