"""The collector's own table of live processes: what an exit event needs to say about its process."""

from __future__ import annotations

import pwd
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from amoskys.collectors.process.procfs import FIELD_ORDER, ProcRead, ticks_to_wall_ns
from amoskys.collectors.process.redact import Redactor


@dataclass(slots=True)
class Proc:
    """One process as this collector knows it (argv already redacted)."""

    pid: int
    ppid: int = 0
    exe: str = ""
    argv: list[str] = field(default_factory=list)
    argv_redacted: bool = False
    cwd: str = ""
    uid: int = 0
    user: str = ""
    start_ticks: int | None = None  # /proc start time, clock ticks after boot
    start_time_ns: int = 0
    cgroup: str = ""
    container_id: str = ""
    sha256: bytes = b""
    exec_mono_ns: int = 0  # kernel CLOCK_MONOTONIC of its exec, when the proc connector saw it
    fork_mono_ns: int = 0  # ... of its fork
    unreadable: list[str] = field(default_factory=list)
    epoch: int = 0  # the table's epoch when it was added (see ProcessTable.begin_sync)
    program: Proc | None = None  # forked and not exec'd (yet): whose program it runs


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    """The login name of `uid`, or the number as text when it has no passwd entry (like psutil)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def proc_from_read(read: ProcRead, redactor: Redactor, boot_ns: int, *, ppid: int = 0) -> Proc:
    """A Proc from one /proc read; `ppid` (from the fork event) stands in when stat was unreadable."""
    proc = Proc(read.pid, ppid=ppid, unreadable=list(read.missing))
    if read.exe is not None:
        proc.exe = read.exe
    if read.argv is not None:
        proc.argv, proc.argv_redacted = redactor.redact(read.argv)
    if read.cwd is not None:
        proc.cwd = read.cwd
    if read.stat is not None:
        proc.ppid = read.stat.ppid
        proc.start_ticks = read.stat.start_ticks
        proc.start_time_ns = ticks_to_wall_ns(read.stat.start_ticks, boot_ns)
    elif ppid:  # the fork event told us
        proc.unreadable.remove("ppid")
    if read.uid is not None:
        proc.uid = read.uid
        proc.user = user_name(read.uid)
    if read.cgroup is not None:
        proc.cgroup = read.cgroup
        proc.container_id = read.container_id
    if read.sha256 is not None:
        proc.sha256 = read.sha256
    return proc


#: What a process that was only seen forking (never exec'ing, parent unknown) cannot say.
_UNKNOWN_PROGRAM = ["exe", "argv", "user", "uid", "cgroup", "cwd"]


def inherit_program(proc: Proc) -> list[str]:
    """Fill a forked, never exec'd process with its parent's program (exe, argv, user, cgroup,
    sha256) and the directory it worked in then (cwd): that is what it ran. Returns what stays unknown."""
    source = proc.program
    if source is None:
        return list(_UNKNOWN_PROGRAM)
    proc.exe, proc.argv, proc.argv_redacted = source.exe, source.argv, source.argv_redacted
    proc.cwd = source.cwd
    proc.uid, proc.user, proc.sha256 = source.uid, source.user, source.sha256
    proc.cgroup, proc.container_id = source.cgroup, source.container_id
    return [name for name in source.unreadable if name not in ("ppid", "start_time_ns")]


def mark_unreadable(proc: Proc, name: str) -> None:
    """Add `name` to the unreadable fields, keeping them in proto field order."""
    if name not in proc.unreadable:
        proc.unreadable.append(name)
        proc.unreadable.sort(key=FIELD_ORDER.index)


class ProcessTable:
    """pid → Proc for live processes; entries leave on exit, and a snapshot resynchronises it.

    A snapshot takes a while, and execs and exits keep coming meanwhile: ``begin_sync()`` opens a
    new epoch and notes exits from then on; ``finish_sync()`` then adds what the snapshot saw
    (unless it exited meanwhile) and drops entries older than the sync that the snapshot did not
    see (their exit was missed: the proc connector lost it).
    """

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.epoch = 0
        self._syncing = False
        self._exited_during_sync: set[int] = set()

    def __len__(self) -> int:
        return len(self.procs)

    def get(self, pid: int) -> Proc | None:
        return self.procs.get(pid)

    def put(self, proc: Proc) -> None:
        proc.epoch = self.epoch
        self.procs[proc.pid] = proc

    def pop(self, pid: int) -> Proc | None:
        if self._syncing:
            self._exited_during_sync.add(pid)
        return self.procs.pop(pid, None)

    def begin_sync(self) -> None:
        self.epoch += 1
        self._syncing = True
        self._exited_during_sync.clear()

    def finish_sync(self, seen: Iterable[Proc]) -> int:
        """Merge a snapshot taken since begin_sync(); returns how many stale entries were dropped."""
        sync_epoch = self.epoch
        seen_pids: set[int] = set()
        for proc in seen:
            seen_pids.add(proc.pid)
            if proc.pid in self._exited_during_sync:
                continue
            current = self.procs.get(proc.pid)
            if current is not None and current.epoch >= sync_epoch:
                continue  # an exec since the sync began knows better
            if current is not None and current.start_ticks == proc.start_ticks:
                proc.exec_mono_ns = current.exec_mono_ns
                proc.fork_mono_ns = current.fork_mono_ns
            proc.epoch = sync_epoch
            self.procs[proc.pid] = proc
        stale = [pid for pid, p in self.procs.items() if p.epoch < sync_epoch and pid not in seen_pids]
        for pid in stale:
            del self.procs[pid]
        self._syncing = False
        self._exited_during_sync.clear()
        return len(stale)

    def seed(self, procs: Iterable[Proc]) -> None:
        """Fill the table from a snapshot with nothing to reconcile (the polling differ's baseline)."""
        for proc in procs:
            self.put(proc)
