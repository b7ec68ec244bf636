"""Replay a process testcase through the collector's netlink path and render what it publishes.

A case (``testcases/<case>/``) holds:

- ``input.pcap``: the proc connector datagrams, as ``tcpdump -i nlmon0`` writes them (link type
  LINKTYPE_NETLINK: a 16-byte Linux cooked header, then the netlink message; Wireshark decodes it).
  Records with the same timestamp arrive in one wake-up of the reader;
- ``proc/<pid>/``: what ``/proc/<pid>`` held when the collector read it for an exec (``cmdline``,
  ``stat``, ``status``, ``cgroup`` and the ``exe`` link); a pid without a folder had exited already;
- ``config.toml`` (optional): a ``[collectors.process]`` section;
- ``expected.jsonl``: the reviewed output (see ``render``).

The datagrams go through the collector's own code: the reader's callback (``ConnectorReader``: parse,
per-CPU sequence check, loss accounting, malformed datagrams counted), the /proc reading thread
(``procfs.read_many`` with ``procfs.PROC`` pointed at the case's ``proc/``) and the enricher
(``RealtimeTracker._handle``: the process table, fork/exec/exit rules, redaction, envelopes). Only the
socket is replaced by the recording. The replay calls those steps as the event loop would, private
names included (``ProcessCollector._realtime``, ``ConnectorReader._on_readable``,
``RealtimeTracker._handle`` and its wall-clock offset): renaming them breaks it loudly. Times are made fixed: the kernel's CLOCK_MONOTONIC 0 is
2026-01-01T00:00:00Z, and the machine booted then. Executables are not hashed (the ``exe`` links
name files of the machine the case was recorded on): ``hash_max_mb`` is 0 in every replay.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from google.protobuf import json_format
from process_harness import Harness

from amoskys.collectors.process import procfs
from amoskys.collectors.process.config import ProcessConfig
from amoskys.config import from_mapping
from amoskys.proto import events_pb2

CASES_DIR = Path(__file__).resolve().parent / "testcases"
REGENERATE = ".venv/bin/python tests/collectors/process/make_process_testcases.py --expected"

#: pcap magic → (byte order, ns per unit of the fraction)
PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
LINKTYPE_NETLINK = 253
ARPHRD_NETLINK = 824
NETLINK_CONNECTOR = 11
#: pkttype, hatype, address length, address (8), protocol: big-endian, as libpcap writes it.
COOKED = struct.Struct(">HHH8sH")
T0_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z: CLOCK_MONOTONIC 0 and the boot time


def cases() -> list[str]:
    return sorted(p.name for p in CASES_DIR.iterdir() if (p / "input.pcap").is_file())


def case_config(name: str) -> ProcessConfig:
    """The case's [collectors.process] settings (its config.toml over the defaults)."""
    path = CASES_DIR / name / "config.toml"
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    return from_mapping(data, source=str(path)).collectors.process


# ---------------------------------------------------------------- the capture file
def pcap_bytes(records: list[tuple[int, bytes]]) -> bytes:
    """A little-endian, nanosecond pcap of LINKTYPE_NETLINK records: (ts_ns, netlink datagram)."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, LINKTYPE_NETLINK)]
    for ts_ns, datagram in records:
        frame = COOKED.pack(4, ARPHRD_NETLINK, 0, bytes(8), NETLINK_CONNECTOR) + datagram
        out.append(
            struct.pack("<IIII", ts_ns // 1_000_000_000, ts_ns % 1_000_000_000, len(frame), len(frame))
        )
        out.append(frame)
    return b"".join(out)


def read_pcap(path: Path) -> list[tuple[int, bytes]]:
    """(ts_ns, datagram) of every record of a LINKTYPE_NETLINK pcap (either byte order, micro- or
    nanosecond times: ``pcap_bytes`` or ``tcpdump -i nlmon0 -w``)."""
    data = path.read_bytes()
    if data[:4] not in PCAP_MAGIC:
        raise ValueError(f"{path}: not a pcap file")
    order, scale = PCAP_MAGIC[data[:4]]
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    if linktype != LINKTYPE_NETLINK:
        raise ValueError(f"{path}: link type {linktype}, expected {LINKTYPE_NETLINK} (netlink)")
    records = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _length = struct.unpack_from(order + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + caplen]
        _pkttype, hatype, _alen, _addr, protocol = COOKED.unpack_from(frame)
        if (hatype, protocol) != (ARPHRD_NETLINK, NETLINK_CONNECTOR):
            raise ValueError(f"{path}: a record at byte {offset} is not from a NETLINK_CONNECTOR socket")
        records.append((seconds * 1_000_000_000 + fraction * scale, frame[COOKED.size :]))
        offset += 16 + caplen
    return records


def wakeups(records: list[tuple[int, bytes]]) -> list[list[bytes]]:
    """The datagrams grouped by timestamp: what one ``receive()`` of the reader returns."""
    groups: list[list[bytes]] = []
    last: int | None = None
    for ts_ns, datagram in records:
        if ts_ns != last:
            groups.append([])
            last = ts_ns
        groups[-1].append(datagram)
    return groups


class RecordedConnector:
    """Stands in for ``ProcConnector``: each ``receive()`` returns the next recorded wake-up.

    ``fileno()`` is the read end of a pipe nobody writes to, so the reader can register its
    callback as usual and it never fires: the replay calls it.
    """

    subscribe_ack = 0
    buffer_bytes = 0

    def __init__(self, groups: list[list[bytes]]) -> None:
        self._groups = list(groups)
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def receive(self, max_datagrams: int) -> tuple[list[bytes], bool, bool]:
        batch = self._groups.pop(0) if self._groups else []
        return batch[:max_datagrams], False, True

    def close(self) -> None:
        for fd in (self._read, self._write):
            os.close(fd)
        self._read = self._write = -1


@contextmanager
def proc_root(path: Path) -> Iterator[None]:
    """Point the collector's /proc reads at `path` (the reading thread sees it: a module global)."""
    saved = procfs.PROC
    procfs.PROC = str(path)
    try:
        yield
    finally:
        procfs.PROC = saved


# ---------------------------------------------------------------- the replay
async def replay(name: str) -> list[events_pb2.Envelope | dict[str, Any]]:
    """What the collector publishes for the case, then a summary of what it counted."""
    folder = CASES_DIR / name
    groups = wakeups(read_pcap(folder / "input.pcap"))
    settings = msgspec.structs.asdict(case_config(name)) | {"hash_max_mb": 0}
    harness = Harness(Path(tempfile.gettempdir()), **settings)
    malformed: list[str] = []
    count_error = harness.ctx.count_error

    def counted(error: BaseException | str) -> None:
        malformed.append(str(error))
        count_error(error)

    harness.ctx.count_error = counted  # type: ignore[method-assign]
    collector = harness.collector
    collector.boot_ns = T0_NS
    tracker = collector._realtime()  # the tracker run() would start, wired the same way
    tracker._offset, tracker._offset_measured_ns = T0_NS, 1 << 62  # a fixed kernel → UTC offset
    reader = tracker.reader
    reader.connector = RecordedConnector(groups)  # type: ignore[assignment]
    try:
        with proc_root(folder / "proc"):
            for _ in groups:
                reader._on_readable()  # what the event loop calls when the socket is readable
                await tracker._handle(reader.take())
    finally:
        tracker.close()
    summary = {"malformed_datagrams": malformed, "tracked_pids": sorted(collector.table.procs)}
    return [*harness.sink, summary]


def render(items: list[events_pb2.Envelope | dict[str, Any]]) -> str:
    """One JSON line per published envelope (its time and body, in the proto JSON mapping, without
    the publisher's ids), then ``{"summary": ...}``."""
    lines = []
    for item in items:
        if isinstance(item, dict):
            lines.append({"summary": item})
            continue
        kind = item.WhichOneof("body")
        body = json_format.MessageToDict(getattr(item, kind), preserving_proto_field_name=True)
        lines.append({"ts_ns": item.ts_ns, kind: body})
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


async def run_case(name: str) -> str:
    return render(await replay(name))
