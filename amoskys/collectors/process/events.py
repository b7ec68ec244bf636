"""ProcessEvent and LossReport envelopes, built from the collector's Proc records."""

from __future__ import annotations

from amoskys.collectors.process.table import Proc
from amoskys.proto import events_pb2

EXEC = events_pb2.ProcessEvent.EXEC
EXIT = events_pb2.ProcessEvent.EXIT
SNAPSHOT = events_pb2.ProcessEvent.SNAPSHOT


def _fill(body: events_pb2.ProcessEvent, proc: Proc) -> None:
    body.pid = proc.pid
    body.ppid = proc.ppid
    body.exe = proc.exe
    body.argv.extend(proc.argv)
    body.argv_redacted = proc.argv_redacted
    body.cwd = proc.cwd
    body.user = proc.user
    body.uid = proc.uid
    body.start_time_ns = proc.start_time_ns
    body.exe_sha256 = proc.sha256
    body.cgroup = proc.cgroup
    body.container_id = proc.container_id


def exec_event(proc: Proc, ts_ns: int) -> events_pb2.Envelope:
    """An EXEC event at `ts_ns` (the exec's kernel time, or the start time when found by polling)."""
    envelope = events_pb2.Envelope(ts_ns=ts_ns)
    body = envelope.process
    body.kind = EXEC
    _fill(body, proc)
    body.unreadable.extend(proc.unreadable)
    return envelope


def exit_event(
    proc: Proc,
    ts_ns: int,
    *,
    exit_code: int | None,
    exit_signal: int | None,
    lifetime_ns: int,
    unreadable: list[str],
) -> events_pb2.Envelope:
    """An EXIT event; `unreadable` names what is unknown about the process (or its exit code)."""
    envelope = events_pb2.Envelope(ts_ns=ts_ns)
    body = envelope.process
    body.kind = EXIT
    _fill(body, proc)
    if exit_code is not None:
        body.exit_code = exit_code
    if exit_signal is not None:
        body.exit_signal = exit_signal
    body.lifetime_ns = max(0, lifetime_ns)
    body.unreadable.extend(unreadable)
    return envelope


def snapshot_event(
    proc: Proc, ts_ns: int, *, cpu_percent: float, cpu_seconds: float, rss_bytes: int
) -> events_pb2.Envelope:
    """A SNAPSHOT event: one process of the inventory taken at `ts_ns`."""
    envelope = events_pb2.Envelope(ts_ns=ts_ns)
    body = envelope.process
    body.kind = SNAPSHOT
    _fill(body, proc)
    body.cpu_percent = cpu_percent
    body.cpu_seconds = cpu_seconds
    body.rss_bytes = rss_bytes
    body.unreadable.extend(proc.unreadable)
    return envelope


def loss_event(
    count: int, reason: str, *, window_start_ns: int, window_end_ns: int, where: str = "process.netlink"
) -> events_pb2.Envelope:
    """A LossReport: `count` proc connector messages lost between the two times (UTC ns)."""
    envelope = events_pb2.Envelope(ts_ns=window_end_ns)
    loss = envelope.loss
    loss.what = "process_events"
    loss.where = where
    loss.count = count
    loss.reason = reason
    loss.window_start_ns = window_start_ns
    loss.window_end_ns = window_end_ns
    return envelope
