"""The inventory snapshot: every process, read with psutil (blocking: run it in a worker thread)."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from amoskys.collectors.process import procfs
from amoskys.collectors.process.hashing import ExeHashes
from amoskys.collectors.process.redact import Redactor
from amoskys.collectors.process.table import Proc, user_name

_ATTRS = (
    "exe",
    "cmdline",
    "cwd",
    "uids",
    "cpu_times",
    "memory_info",
    "cpu_percent",
)  # user: our cached lookup


@dataclass(slots=True)
class SnapshotRow:
    """One process of a snapshot, with the resource figures only snapshots carry."""

    proc: Proc
    cpu_percent: float  # since the previous snapshot, in % of one core (0 in the first one)
    cpu_seconds: float  # user + system since the process started
    rss_bytes: int


class Snapshotter:
    """Takes snapshots; keeps the psutil.Process objects between them so cpu_percent has a base."""

    def __init__(self, redactor: Redactor, hashes: ExeHashes) -> None:
        self.redactor = redactor
        self.hashes = hashes
        self._known: dict[int, tuple[int, psutil.Process]] = {}  # pid → (start ticks, Process)

    def take(self, boot_ns: int) -> list[SnapshotRow]:
        """Every process now; the ones that vanish while being read are left out. Blocking."""
        rows: list[SnapshotRow] = []
        known: dict[int, tuple[int, psutil.Process]] = {}
        for pid in psutil.pids():
            row = self._read(pid, boot_ns, known)
            if row is not None:
                rows.append(row)
        self._known = known
        return rows

    def _read(
        self, pid: int, boot_ns: int, known: dict[int, tuple[int, psutil.Process]]
    ) -> SnapshotRow | None:
        try:
            with open(f"{procfs.PROC}/{pid}/stat", "rb") as f:
                stat = procfs.parse_stat(f.read().decode("utf-8", "replace"))
        except (OSError, ValueError):
            return None  # gone
        previous = self._known.get(pid)
        try:
            if previous is not None and previous[0] == stat.start_ticks:
                process = previous[1]
            else:  # new, or the pid was reused
                process = psutil.Process(pid)
            info = process.as_dict(list(_ATTRS), ad_value=None)
        except psutil.NoSuchProcess:
            return None
        known[pid] = (stat.start_ticks, process)
        kernel_thread = bool(stat.flags & procfs.PF_KTHREAD)
        proc = Proc(
            pid,
            ppid=stat.ppid,
            start_ticks=stat.start_ticks,
            start_time_ns=procfs.ticks_to_wall_ns(stat.start_ticks, boot_ns),
        )
        unreadable = proc.unreadable
        exe = info["exe"]
        if exe is None and not kernel_thread:
            unreadable.append("exe")
            if self.hashes.max_bytes > 0:
                unreadable.append("exe_sha256")
        proc.exe = exe or ""
        argv = info["cmdline"]
        if argv or kernel_thread:
            proc.argv, proc.argv_redacted = self.redactor.redact(argv or [])
        else:
            unreadable.append("argv")
        cwd = info["cwd"]
        if cwd is None and not kernel_thread:
            unreadable.append("cwd")
        proc.cwd = cwd or ""
        uids = info["uids"]
        if uids is not None:
            proc.uid = uids.real
            proc.user = user_name(uids.real)
        else:
            unreadable.extend(("user", "uid"))
        if exe and self.hashes.max_bytes > 0:
            digest, readable = self.hashes.digest_path(f"{procfs.PROC}/{pid}/exe")
            proc.sha256 = digest or b""
            if not readable:
                unreadable.append("exe_sha256")
        try:
            with open(f"{procfs.PROC}/{pid}/cgroup", "rb") as f:
                proc.cgroup, proc.container_id = procfs.parse_cgroup(f.read().decode("utf-8", "replace"))
        except OSError:
            unreadable.append("cgroup")
        unreadable.sort(key=procfs.FIELD_ORDER.index)
        cpu = info["cpu_times"]
        memory = info["memory_info"]
        return SnapshotRow(
            proc,
            cpu_percent=info["cpu_percent"] or 0.0,
            cpu_seconds=(cpu.user + cpu.system) if cpu is not None else 0.0,
            rss_bytes=memory.rss if memory is not None else 0,
        )
