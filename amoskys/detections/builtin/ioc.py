"""Flows to or from an address of an IOC list: files of IP addresses and CIDR networks, one per line
(``#`` starts a comment; blank lines are skipped). The files are read again when they change
(checked from the detections' clock tick, at most every `RELOAD_SECONDS`); a line that is not an
address or a network is logged with its file and line number and skipped, the rest still loads; a
file that cannot be read keeps its previous entries until it can."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from amoskys.config import IocConfig
from amoskys.detections.builtin.finding import Detector, Finding, FlowStart, builtin_rule

log = structlog.get_logger(__name__)

RULE = builtin_rule(
    "ioc",
    "Flow to or from an IOC address",
    "high",
    tags=("attack.t1071",),
    description="A flow's source or destination address is on a configured IOC list.",
)
RELOAD_SECONDS = 5.0
_NS = 1_000_000_000
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class BadLine:
    path: str
    line: int
    text: str
    reason: str


class IocSet:
    """Addresses and networks; membership costs one set lookup per prefix length present."""

    def __init__(self, networks: dict[Network, str]) -> None:
        self.origin = networks  # network -> the file it came from
        self._by_len: dict[tuple[int, int], set[int]] = {}
        for net in networks:
            self._by_len.setdefault((net.version, net.prefixlen), set()).add(int(net.network_address))
        self._lens = sorted(self._by_len, key=lambda k: -k[1])

    def __len__(self) -> int:
        return len(self.origin)

    def find(self, address: str) -> Network | None:
        """The most specific listed network holding `address` (None: not listed, or not an address)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        value, bits = int(ip), 32 if ip.version == 4 else 128
        for version, plen in self._lens:
            if version != ip.version:
                continue
            masked = value >> (bits - plen) << (bits - plen) if plen else 0
            if masked in self._by_len[(version, plen)]:
                return ipaddress.ip_network((masked, plen))
        return None


def parse(text: str, path: str = "<text>") -> tuple[dict[Network, str], list[BadLine]]:
    """The networks of one IOC file's text, and its bad lines."""
    found: dict[Network, str] = {}
    bad: list[BadLine] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            found[ipaddress.ip_network(line, strict=False)] = path
        except ValueError as err:
            bad.append(BadLine(path, n, line[:100], str(err)))
    return found, bad


class Ioc(Detector):
    name = "ioc"
    rules = (RULE,)
    flows = True

    def __init__(self, config: IocConfig) -> None:
        self.paths = [Path(p) for p in config.ioc_files]
        self.set = IocSet({})
        self._stamps: dict[Path, tuple[int, int] | None] = {}
        self._per_file: dict[Path, dict[Network, str]] = {}
        self._next_check = 0
        self.loads = 0

    def reload(self) -> bool:
        """Read the files that changed since the last look (blocking: stat and read); True when the set
        changed."""
        changed = False
        for path in self.paths:
            try:
                st = os.stat(path)
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except OSError as err:
                stamp = None
                if self._stamps.get(path, ()) is not None:
                    log.warning("ioc_file_unreadable", path=str(path), error=err.strerror or str(err))
            if path in self._stamps and stamp == self._stamps[path]:
                continue
            self._stamps[path] = stamp
            if stamp is None:
                continue  # keeps what it had
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as err:
                log.warning("ioc_file_unreadable", path=str(path), error=err.strerror or str(err))
                self._stamps[path] = None
                continue
            found, bad = parse(text, str(path))
            for b in bad[:20]:
                log.warning("ioc_line_invalid", path=b.path, line=b.line, text=b.text, reason=b.reason)
            if len(bad) > 20:
                log.warning("ioc_lines_invalid", path=str(path), more=len(bad) - 20)
            self._per_file[path] = found
            changed = True
            log.info("ioc_file_loaded", path=str(path), entries=len(found), invalid=len(bad))
        if changed:
            merged: dict[Network, str] = {}
            for found in self._per_file.values():
                merged.update(found)
            self.set = IocSet(merged)
            self.loads += 1
        return changed

    def tick(self, now_ns: int) -> list[Finding]:
        if self.paths and now_ns >= self._next_check:
            self._next_check = now_ns + int(RELOAD_SECONDS * _NS)
            self.reload()
        return []

    def flow(self, start: FlowStart) -> list[Finding]:
        if not len(self.set):
            return []
        out: list[Finding] = []
        for side, address, peer in (("destination", start.dst, start.src), ("source", start.src, start.dst)):
            net = self.set.find(address)
            if net is None:
                continue
            out.append(
                Finding(
                    RULE,
                    start.host,
                    start.ts_ns,
                    f"flow {start.src}:{start.sport} -> {start.dst}:{start.dport}/{start.proto}: "
                    f"{side} {address} is listed ({net} in {Path(self.set.origin[net]).name})",
                    {
                        "ioc": address,
                        "network": str(net),
                        "list": self.set.origin[net],
                        "side": side,
                        "peer": peer,
                        "src": start.src,
                        "dst": start.dst,
                        "sport": str(start.sport),
                        "dport": str(start.dport),
                        "protocol": str(start.proto),
                        "interface": start.interface,
                    },
                    evidence=start.event_id,
                    key=f"{start.src}:{start.sport}-{start.dst}:{start.dport}/{start.proto}@{start.ts_ns}",
                )
            )
            break  # one finding per flow
        return out
