"""Run the peers — softflowd (NetFlow v9 → nfcapd → nfdump) and tshark — on a pcap, and put their
results and ours in one comparable shape; and tshark capturing a live interface beside the collector.

Both peers see one *direction* of a flow at a time (softflowd exports each direction as a record of
its own; tshark's conversation table has a column per direction), so the comparison is a multiset of
unidirectional flow parts: ``(src, dst, proto, sport, dport, vlan) -> [(packets, octets), ...]``.
ICMP parts are keyed by (src, dst, proto) only: softflowd splits a request from its reply, we pair
them, and both show as the same two directions. SCTP parts are keyed without ports: softflowd
does not read them.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from types import TracebackType

from amoskys.collectors.flow.pcap import open_capture
from amoskys.collectors.flow.records import FlowRecordData
from amoskys.collectors.flow.table import FlowTable

from support import require_tool, wait_for

Key = tuple[object, ...]
Parts = dict[Key, list[tuple[int, int]]]


def _key(src: str, dst: str, proto: int, sport: int, dport: int, vlan: int) -> Key:
    if proto in (1, 58):
        return (src, dst, proto)
    if proto == 132:  # softflowd does not read SCTP ports
        return (src, dst, proto, vlan)
    return (src, dst, proto, sport, dport, vlan)


def our_parts(pcap: Path) -> tuple[Parts, list[FlowRecordData]]:
    """Our records for ``pcap`` split into directions, metered as softflowd meters a file: with
    timeouts that never fire (softflowd checks them by the wall clock, every few seconds, so a file
    read in milliseconds sees none) and no interim records."""
    day = 86_400
    table = FlowTable(tcp_idle_seconds=day, idle_seconds=day, active_seconds=day, linger_seconds=day)
    with open_capture(pcap) as reader:
        reader.feed(table)
    table.flush()
    records, _ = table.drain()
    parts: Parts = defaultdict(list)
    for r in records:
        fwd = _key(r.src_addr, r.dst_addr, r.protocol, r.src_port, r.dst_port, r.vlan)
        rev = _key(r.dst_addr, r.src_addr, r.protocol, r.dst_port, r.src_port, r.vlan)
        if r.fwd_packets:
            parts[fwd].append((r.fwd_packets, r.fwd_octets))
        if r.rev_packets:
            parts[rev].append((r.rev_packets, r.rev_octets))
    return {k: sorted(v) for k, v in parts.items()}, records


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_queue(port: int) -> int | None:
    """Bytes waiting in the receive queue of the socket bound to UDP 127.0.0.1:``port``; None when
    no socket is bound there (Linux /proc/net/udp)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted:
            return int(fields[4].split(":")[1], 16)
    return None


def softflowd_parts(pcap: Path, workdir: Path) -> Parts:
    """softflowd's flows for ``pcap``, via nfcapd and nfdump (run here and now)."""
    softflowd = require_tool("softflowd", "softflowd")
    nfcapd = require_tool("nfcapd", "nfdump")
    nfdump = require_tool("nfdump", "nfdump")
    flowdir = workdir / "nfcapd"
    flowdir.mkdir(parents=True, exist_ok=True)
    port = _free_udp_port()
    log = open(workdir / "nfcapd.log", "w+b")
    collector = subprocess.Popen(
        [nfcapd, "-b", "127.0.0.1", "-p", str(port), "-w", str(flowdir), "-t", "3600", "-B", "33554432"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _udp_queue(port) is not None, timeout=10, what=f"nfcapd to listen on {port}")
        cmd = [softflowd, "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-c", "none", "-d"]
        cmd += ["-v", "9", "-6", "-T", "vlan", "-m", "4000000", "-p", str(workdir / "softflowd.pid")]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
        m = re.search(r"Flows exported: \d+ \((\d+) records\)", run.stdout + run.stderr)
        if not m:
            raise AssertionError(f"softflowd said nothing about exported flows:\n{run.stdout}{run.stderr}")
        exported = int(m.group(1))
        # nfcapd drops what it has not read when told to stop: let it drain its socket first
        wait_for(lambda: _udp_queue(port) == 0, timeout=30, what="nfcapd to read every record")
        time.sleep(0.2)
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
        log.seek(0)
        collector_log = log.read().decode(errors="replace")
        log.close()
    m = re.search(r"Flows: (\d+), Packets: \d+, Bytes: \d+, Sequence Errors: (\d+)", collector_log)
    if not m or int(m.group(1)) != exported or int(m.group(2)):
        raise AssertionError(
            f"nfcapd did not receive all {exported} records softflowd sent:\n{collector_log}"
        )
    if exported == 0:
        return {}
    files = sorted(p for p in flowdir.glob("nfcapd.*") if "current" not in p.name)
    text = subprocess.run(
        [nfdump, "-o", "json", *(a for f in files for a in ("-r", str(f)))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    parts: Parts = defaultdict(list)
    for rec in json.loads(text or "[]"):
        src = rec.get("src4_addr") or rec.get("src6_addr")
        dst = rec.get("dst4_addr") or rec.get("dst6_addr")
        key = _key(
            src, dst, rec["proto"], rec.get("src_port", 0), rec.get("dst_port", 0), rec.get("src_vlan", 0)
        )
        parts[key].append((rec["in_packets"], rec["in_bytes"]))
    return {k: sorted(v) for k, v in parts.items()}


# "A:port <-> B:port   <-frames <-bytes unit   ->frames ->bytes unit   total ...": "<-" is B to A
_CONV_LINE = re.compile(
    r"^(?P<a>\S+):(?P<pa>\d+)\s+<->\s+(?P<b>\S+):(?P<pb>\d+)\s+"
    r"(?P<b2a>\d+)\s+[\d,.]+\s+\w+\s+(?P<a2b>\d+)\s+[\d,.]+\s+\w+"
)


def tshark_packets(pcap: Path) -> dict[Key, int]:
    """Packets per direction of each TCP and UDP conversation (``tshark -q -z conv,tcp -z conv,udp``).

    tshark has no timeouts and no VLAN in its conversations: use it on captures whose flows no
    timeout splits and whose 5-tuples are unique across VLANs. Its bytes are frame bytes, not IP
    bytes, so only packets are compared."""
    tshark = require_tool("tshark", "tshark")
    text = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-q", "-z", "conv,tcp", "-z", "conv,udp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    out: dict[Key, int] = defaultdict(int)
    proto = 0
    for line in text.splitlines():
        if line.startswith("TCP Conversations"):
            proto = 6
        elif line.startswith("UDP Conversations"):
            proto = 17
        m = _CONV_LINE.match(line.strip())
        if not m or not proto:
            continue
        a, b = m["a"], m["b"]
        pa, pb = int(m["pa"]), int(m["pb"])
        if int(m["a2b"]):
            out[(a, b, proto, pa, pb)] += int(m["a2b"])
        if int(m["b2a"]):
            out[(b, a, proto, pb, pa)] += int(m["b2a"])
    return dict(out)


def our_packets_by_5tuple(records: list[FlowRecordData]) -> dict[Key, int]:
    """Our TCP and UDP packets per direction, summed over flows and VLANs (tshark's view)."""
    out: dict[Key, int] = defaultdict(int)
    for r in records:
        if r.protocol not in (6, 17):
            continue
        if r.fwd_packets:
            out[(r.src_addr, r.dst_addr, r.protocol, r.src_port, r.dst_port)] += r.fwd_packets
        if r.rev_packets:
            out[(r.dst_addr, r.src_addr, r.protocol, r.dst_port, r.src_port)] += r.rev_packets
    return dict(out)


class TsharkCapture:
    """``tshark -i INTERFACE [-f FILTER] -w FILE``: tshark capturing a live interface into a pcapng file
    while a test sends traffic, to compare with the collector on the same interface.

    Entering starts tshark and returns once it captures (its capture file exists: dumpcap writes it
    after opening the interface and setting the filter); leaving stops it with SIGINT, so the file
    is complete. Blocking: from a coroutine, enter and leave it in a thread.
    """

    def __init__(self, interface: str, path: Path, capture_filter: str = "") -> None:
        self.interface = interface
        self.path = path
        self.capture_filter = capture_filter
        self.log = path.with_suffix(".tshark.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TsharkCapture:
        tshark = require_tool("tshark", "tshark")
        command = [tshark, "-n", "-i", self.interface, "-w", str(self.path)]
        if self.capture_filter:
            command += ["-f", self.capture_filter]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._capturing, timeout=60, what=f"tshark to capture on {self.interface}")
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _capturing(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"tshark exited with {self.proc.returncode}:\n{self.output()}")
        return self.path.exists() and self.path.stat().st_size > 0

    def holds(self, data: bytes) -> bool:
        """True once the capture file holds ``data`` (tshark writes what it captured every ~0.5 s)."""
        return data in self.path.read_bytes()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            raise AssertionError(f"tshark did not stop on SIGINT:\n{self.output()}") from None
