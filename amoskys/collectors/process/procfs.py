"""What /proc says about one process: pure parsers of its files, and the blocking reads.

The read functions block (a ``cmdline`` read takes the target's mm lock) and are called from a
worker thread only, never on the event loop. Each read opens ``/proc/<pid>`` once and reads its
files relative to that directory, so a pid reused half-way cannot mix two processes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

PROC = "/proc"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PF_KTHREAD = 0x00200000

#: A container id: 64 hex digits as the last cgroup path component, with or without a runtime
#: prefix (docker-, cri-containerd-, crio-, libpod-) and a ``.scope`` suffix.
_CONTAINER_ID = re.compile(r"(?:^|[/:-])([0-9a-f]{64})(?:\.scope)?$")

#: Names a ProcessEvent's ``unreadable`` may list, in the order of their proto field numbers.
FIELD_ORDER: tuple[str, ...] = (
    "ppid",
    "exe",
    "argv",
    "user",
    "uid",
    "start_time_ns",
    "exit_code",
    "exe_sha256",
    "cgroup",
    "cwd",
)

#: (st_dev, st_ino, st_size, st_mtime_ns) of an executable: the key of its cached sha256.
ExeKey = tuple[int, int, int, int]


class Stat(NamedTuple):
    """The fields of /proc/<pid>/stat this collector uses."""

    comm: str
    state: str
    ppid: int
    flags: int
    utime: int  # clock ticks
    stime: int
    start_ticks: int  # clock ticks after boot
    rss_pages: int


def parse_stat(text: str) -> Stat:
    """Parse /proc/<pid>/stat; the command name may hold spaces and parentheses.

    Raises ValueError when the text is not a stat line.
    """
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    fields = text[close_paren + 2 :].split()
    if len(fields) < 22:
        raise ValueError(f"/proc/<pid>/stat line has {len(fields) + 2} fields, expected at least 24")
    return Stat(
        comm=text[open_paren + 1 : close_paren],
        state=fields[0],
        ppid=int(fields[1]),
        flags=int(fields[6]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def parse_status_uid(text: str) -> int | None:
    """The real uid from the ``Uid:`` line of /proc/<pid>/status."""
    at = text.find("\nUid:")
    if at < 0:
        return None
    parts = text[at + 5 : text.find("\n", at + 5)].split()
    return int(parts[0]) if parts else None


def parse_cgroup(text: str) -> tuple[str, str]:
    """(cgroup path, container id) from /proc/<pid>/cgroup (v2 ``0::/path`` and v1 lines).

    The path is the unified (v2) one unless that is the root and a v1 hierarchy says more; the
    container id is found in any hierarchy's path, "" when there is none.
    """
    unified = ""
    first_v1 = ""
    container = ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2]
        if parts[0] == "0" and parts[1] == "":
            unified = path
        elif path and path != "/" and not first_v1:
            first_v1 = path
        if not container:
            m = _CONTAINER_ID.search(path)
            if m:
                container = m.group(1)
    if unified and unified != "/":
        return unified, container
    return first_v1 or unified, container


def parse_cmdline(raw: bytes) -> list[str]:
    """argv from /proc/<pid>/cmdline (NUL-separated; undecodable bytes kept as surrogate escapes)."""
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0")]


def boot_wall_ns() -> int:
    """When this machine booted, UTC ns: the base of /proc start times (which count CLOCK_BOOTTIME)."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def wall_ns_to_ticks(wall_ns: int, boot_ns: int) -> int:
    """UTC ns as a /proc start time (clock ticks after boot, rounded down), given boot_wall_ns()."""
    return (wall_ns - boot_ns) * CLK_TCK // 1_000_000_000


def ticks_to_wall_ns(ticks: int, boot_ns: int) -> int:
    """A /proc start time (clock ticks after boot) as UTC ns, given boot_wall_ns()."""
    return boot_ns + ticks * 1_000_000_000 // CLK_TCK


@dataclass(slots=True)
class ProcRead:
    """What one read of /proc/<pid> found; None (and a name in ``missing``) for what it could not."""

    pid: int
    read_mono_ns: int = 0  # CLOCK_MONOTONIC when the read began
    gone: bool = False  # /proc/<pid> did not exist (any more)
    exe: str | None = None
    argv: list[str] | None = None
    cwd: str | None = None
    stat: Stat | None = None
    uid: int | None = None
    cgroup: str | None = None
    container_id: str = ""
    exe_key: ExeKey | None = None
    exe_fd: int | None = None  # an open fd on the executable, left for the hasher to close
    sha256: bytes | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def kernel_thread(self) -> bool:
        return self.stat is not None and bool(self.stat.flags & PF_KTHREAD)


def _read_at(name: str, dir_fd: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        data = os.read(fd, 65536)
        if len(data) < 4096:  # /proc files shorter than a page come whole: no read for EOF needed
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


#: Pids whose /proc directories are held open at once by read_many().
_CHUNK = 64


def read_process(
    pid: int,
    *,
    cached_sha256: Callable[[ExeKey], bytes | None] | None = None,
    hash_max_bytes: int = 0,
) -> ProcRead:
    """Read exe, argv, cwd, stat, uid and cgroup of `pid`, what vanishes first at exit first.

    With `cached_sha256` and `hash_max_bytes` > 0, the executable is opened too: its sha256 is
    taken from the cache when its (dev, inode, size, mtime) is known, else the open fd is left in
    ``exe_fd`` for the caller to hash (and close). Never raises OSError: what failed is listed in
    ``missing``, in FIELD_ORDER.
    """
    return read_many([pid], cached_sha256=cached_sha256, hash_max_bytes=hash_max_bytes)[0]


def read_many(
    pids: Iterable[int],
    *,
    cached_sha256: Callable[[ExeKey], bytes | None] | None = None,
    hash_max_bytes: int = 0,
) -> list[ProcRead]:
    """read_process() for each pid, in order, in two passes over every chunk of pids: first argv
    and exe (gone the moment a process exits) of all of them, then stat, status and cgroup (which a
    zombie still has). One worker-thread hop serves a whole batch."""
    pending = list(pids)
    reads: list[ProcRead] = []
    hashing = cached_sha256 is not None and hash_max_bytes > 0
    for start in range(0, len(pending), _CHUNK):
        opened = [_begin(pid, cached_sha256, hash_max_bytes) for pid in pending[start : start + _CHUNK]]
        for read, dir_fd in opened:
            if dir_fd is not None:
                try:
                    _finish(read, dir_fd, hashing)
                finally:
                    os.close(dir_fd)
            reads.append(read)
    return reads


def _begin(
    pid: int, cached_sha256: Callable[[ExeKey], bytes | None] | None, hash_max_bytes: int
) -> tuple[ProcRead, int | None]:
    """Open /proc/<pid> and read argv, exe and cwd; (the read, the open directory or None when gone)."""
    result = ProcRead(pid, read_mono_ns=time.monotonic_ns())
    try:
        dir_fd = os.open(f"{PROC}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        result.gone = True
        result.missing.extend(("ppid", "exe", "argv", "user", "uid", "start_time_ns", "cgroup"))
        if cached_sha256 is not None and hash_max_bytes > 0:
            result.missing.insert(6, "exe_sha256")
        result.missing.append("cwd")
        return result, None
    try:
        result.argv = parse_cmdline(_read_at("cmdline", dir_fd))
    except OSError:
        pass
    try:
        result.exe = os.readlink("exe", dir_fd=dir_fd)
    except OSError:
        pass
    try:  # gone with the process as exe is, and needs the same ptrace access
        result.cwd = os.readlink("cwd", dir_fd=dir_fd)
    except OSError:
        pass
    if result.exe is not None and cached_sha256 is not None and hash_max_bytes > 0:
        _open_exe(result, dir_fd, cached_sha256, hash_max_bytes)
    return result, dir_fd


def _finish(result: ProcRead, dir_fd: int, hashing: bool) -> None:
    """Read stat, uid and cgroup, then list what is missing (FIELD_ORDER)."""
    missing = result.missing
    try:
        result.stat = parse_stat(_read_at("stat", dir_fd).decode("utf-8", "replace"))
    except (OSError, ValueError):
        missing.extend(("ppid", "start_time_ns"))
    try:
        result.uid = parse_status_uid(_read_at("status", dir_fd).decode("utf-8", "replace"))
    except (OSError, ValueError):
        pass
    if result.uid is None:
        missing.extend(("user", "uid"))
    try:
        result.cgroup, result.container_id = parse_cgroup(
            _read_at("cgroup", dir_fd).decode("utf-8", "replace")
        )
    except OSError:
        missing.append("cgroup")
    if result.kernel_thread:  # no executable and no command line, by nature: nothing is missing
        result.exe = result.exe or ""
        result.argv = result.argv or []
    elif not result.argv:  # an empty cmdline: the process's memory is gone (exiting, or a zombie)
        result.argv = None
        missing.append("argv")
    if result.exe is None:
        missing.append("exe")
        if hashing:
            missing.append("exe_sha256")
    if result.cwd is None:
        missing.append("cwd")
    missing.sort(key=FIELD_ORDER.index)


def _open_exe(
    result: ProcRead, dir_fd: int, cached_sha256: Callable[[ExeKey], bytes | None], hash_max_bytes: int
) -> None:
    try:
        st = os.stat("exe", dir_fd=dir_fd)  # follows the link: the executable itself
    except OSError:
        result.missing.append("exe_sha256")
        return
    key: ExeKey = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    result.exe_key = key
    digest = cached_sha256(key)
    if digest is not None or st.st_size > hash_max_bytes:
        result.sha256 = digest  # known already, or too large to hash (then left empty, as documented)
        return
    try:
        fd = os.open("exe", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        result.missing.append("exe_sha256")
        return
    try:
        st = os.fstat(fd)  # the file now open may differ from the one stat'ed (replaced, or pid gone)
    except OSError:
        os.close(fd)
        result.missing.append("exe_sha256")
        return
    result.exe_key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    result.exe_fd = fd


def list_pids() -> list[int]:
    """Every process id (thread-group leaders) now in /proc."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def scan_start_ticks() -> dict[int, int]:
    """pid → start time in ticks for every process now in /proc (pid reuse shows as a new start)."""
    found: dict[int, int] = {}
    for pid in list_pids():
        try:
            with open(f"{PROC}/{pid}/stat", "rb") as f:
                found[pid] = parse_stat(f.read().decode("utf-8", "replace")).start_ticks
        except (OSError, ValueError):
            continue  # gone since the listing
    return found
