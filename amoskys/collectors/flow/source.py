"""Where the flow collector's packets come from: the PacketSource contract, and a capture file.

A source hands packets to a sink in bounded batches (``feed``), so the collector can publish and
yield to the event loop between batches. A live capture (a TPACKET_V3 ring on an interface) is a
source too: its ``feed`` walks the ring's ready blocks, and its ``wait`` sleeps until the socket is
readable; it may also report kernel drops through ``kernel_drops()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from amoskys.collectors.flow.pcap import CaptureReader, PacketSink, open_capture


class PacketSource(Protocol):
    """A stream of frames for the flow table."""

    #: the interface name for a live capture, "" for a file (it goes into every FlowRecord)
    interface: str
    #: True once a finite source (a file) has nothing more to give
    finished: bool

    def feed(self, sink: PacketSink, max_packets: int) -> int:
        """Hand up to ``max_packets`` frames to ``sink.packet``; return how many (0: none ready)."""
        ...

    async def wait(self, timeout_seconds: float) -> None:
        """Return when frames may be ready, or after ``timeout_seconds`` (a live capture's idle
        tick, which lets the table apply timeouts while the link is quiet)."""
        ...

    def close(self) -> None: ...


class FileSource:
    """A pcap or pcapng file as a PacketSource: tests and replays run the collector offline with it.

    It opens the file at the first ``feed`` (constructing it does no I/O).
    """

    interface = ""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.finished = False
        self.reader: CaptureReader | None = None

    def feed(self, sink: PacketSink, max_packets: int) -> int:
        if self.finished:
            return 0
        if self.reader is None:
            self.reader = open_capture(self.path)
        count = self.reader.feed(sink, max_packets)
        if count < max_packets:
            self.finished = True
        return count

    async def wait(self, timeout_seconds: float) -> None:
        return None  # a file is always ready

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
