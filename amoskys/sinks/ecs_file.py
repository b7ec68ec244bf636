"""The ECS file sink: alerts appended to a file as Elastic Common Schema JSON Lines, rotated by size.

Each alert is one line, the document amoskys.ecs makes for it (the same mapping as `amoskys events
export --format ecs`). A batch is written and fsynced in a worker thread before it is acked, so a
line is never lost once the cursor moved past it; after a crash between the fsync and the cursor's
commit, the batch is written again (readers dedupe on ``event.id``). A line cut short by a crash is
removed when the sink opens the file again.

Rotation: before a batch would take the file past `max_bytes`, the file is closed and renamed to
``path.1`` (``path.1`` to ``path.2`` and so on; ``path.<keep>`` is deleted), and a new one started. A
single batch larger than `max_bytes` is still written whole, into a fresh file.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from amoskys import ecs
from amoskys.config import EcsFileSinkConfig
from amoskys.forwarders.base import SendResult, SendStatus
from amoskys.sinks.alerts import AlertFilter, SinkAlert
from amoskys.sinks.metrics import DELIVERED, SinkMetrics
from amoskys.sinks.sink import AlertSink

#: New files are readable by the owner and its group only (alerts name hosts, users and commands).
FILE_MODE = 0o640
#: How far back from the end a torn last line is looked for.
_TAIL_SCAN = 1 << 20


@dataclass(frozen=True, slots=True)
class Lines:
    data: bytes
    count: int


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RotatingFile:
    """An append-only file rotated by size. Every method blocks: call them in a worker thread. A lock
    orders them: a write that outlives its cancelled caller finishes before `close` closes the file."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self._fd = -1
        self._size = 0
        self._lock = threading.Lock()

    def _open(self) -> int:
        if self._fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
            try:
                self._size = self._drop_torn_tail(fd)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _drop_torn_tail(self, fd: int) -> int:
        """Cut a last line that has no newline (a write cut short by a crash); the file's size after."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        start = max(0, size - _TAIL_SCAN)
        with self.path.open("rb") as f:
            f.seek(start)
            tail = f.read()
        if tail.endswith(b"\n"):
            return size
        keep = start + tail.rfind(b"\n") + 1  # rfind -1: no newline at all in the scanned tail
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return keep

    def write(self, data: bytes) -> None:
        """Append `data` (whole lines) and fsync it, rotating first when it would not fit. On an
        error, what this call wrote is cut off again (as far as the file system lets it)."""
        with self._lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        self._open()
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        fd = self._open()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                pass  # the torn tail is cut when the file is opened again
            self._close()
            raise
        self._size += len(data)

    def _rotate(self) -> None:
        self._close()
        rotated(self.path, self.keep).unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            if rotated(self.path, n).exists():
                rotated(self.path, n).rename(rotated(self.path, n + 1))
        if self.path.exists():
            self.path.rename(rotated(self.path, 1))
        _fsync_dir(self.path.parent)
        self.rotations += 1

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class EcsFileSink(AlertSink):
    """Appends each batch of alerts to one rotated JSON Lines file."""

    def __init__(self, config: EcsFileSinkConfig, metrics: SinkMetrics) -> None:
        super().__init__(config.name, AlertFilter(config.min_level, config.rules), metrics)
        self.file = RotatingFile(Path(config.path).expanduser(), config.max_bytes, config.keep)

    def render(self, alerts: list[SinkAlert]) -> Lines:
        lines = []
        for item in alerts:
            doc = ecs.document(item.envelope)
            lines.append(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
        return Lines("".join(lines).encode(), len(lines))

    async def deliver(self, payload: Lines) -> SendResult:
        before = self.file.rotations
        try:
            await asyncio.to_thread(self.file.write, payload.data)
        except OSError as err:
            return SendResult(SendStatus.RETRY, message=f"ecs file {self.file.path}: {err}")
        if self.file.rotations > before:
            self.metrics.ecs_file_rotations.labels(self.name).inc(self.file.rotations - before)
        self.metrics.alerts.labels(self.name, DELIVERED).inc(payload.count)
        return SendResult(SendStatus.OK)

    async def close(self) -> None:
        await asyncio.to_thread(self.file.close)
