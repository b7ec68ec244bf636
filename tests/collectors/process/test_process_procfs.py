"""procfs.py: the /proc parsers, and reads of real processes (alive, gone, kernel threads)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from amoskys.collectors.process import procfs
from amoskys.collectors.process.hashing import ExeHashes

from support import wait_for

SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
DOCKER_ID = "3f" * 32


def test_stat_with_spaces_and_parentheses_in_the_name() -> None:
    text = "42 (a (b) c) S 7 42 42 0 -1 4194560 1 2 3 4 11 22 0 0 20 0 1 0 123456 1000 55 rest\n"
    stat = procfs.parse_stat(text)
    assert (stat.comm, stat.state, stat.ppid, stat.utime, stat.stime, stat.start_ticks, stat.rss_pages) == (
        "a (b) c",
        "S",
        7,
        11,
        22,
        123456,
        55,
    )


def test_cgroup_paths_and_container_ids() -> None:
    assert procfs.parse_cgroup("0::/system.slice/ssh.service\n") == ("/system.slice/ssh.service", "")
    v2_docker = f"0::/system.slice/docker-{DOCKER_ID}.scope\n"
    assert procfs.parse_cgroup(v2_docker) == (f"/system.slice/docker-{DOCKER_ID}.scope", DOCKER_ID)
    v1 = f"12:pids:/docker/{DOCKER_ID}\n4:memory:/docker/{DOCKER_ID}\n0::/\n"
    assert procfs.parse_cgroup(v1) == (f"/docker/{DOCKER_ID}", DOCKER_ID)
    k8s = f"0::/kubepods/besteffort/pod1234/cri-containerd-{DOCKER_ID}.scope\n"
    assert procfs.parse_cgroup(k8s)[1] == DOCKER_ID
    assert procfs.parse_cgroup("0::/\n") == ("/", "")


def test_cmdline_keeps_empty_and_undecodable_arguments() -> None:
    assert procfs.parse_cmdline(b"sh\0-c\0\0x\xff\0") == ["sh", "-c", "", "x\udcff"]
    assert procfs.parse_cmdline(b"") == []


def test_reading_a_live_child_gets_everything(tmp_path: Path) -> None:
    hashes = ExeHashes(16, 64 << 20)
    child = subprocess.Popen([SLEEP, "30"])
    # Popen returns once exec has begun; the new argv is in place a moment later
    wait_for(lambda: Path(f"/proc/{child.pid}/cmdline").read_bytes(), what="the child's argv")
    try:
        read = procfs.read_process(child.pid, cached_sha256=hashes.get, hash_max_bytes=hashes.max_bytes)
    finally:
        child.kill()
        child.wait()
    assert read.missing == [] and not read.gone
    assert read.exe == SLEEP and read.argv == [SLEEP, "30"] and read.uid == os.getuid()
    assert read.stat is not None and read.stat.ppid == os.getpid()
    assert read.cgroup == procfs.parse_cgroup(Path("/proc/self/cgroup").read_text())[0]
    assert read.exe_fd is not None and read.exe_key is not None  # not cached yet: left to hash
    digest = hashes.digest_fd(read.exe_fd, read.exe_key)
    assert digest == hashlib.sha256(Path(SLEEP).read_bytes()).digest()
    again = procfs.read_process(os.getpid(), cached_sha256=hashes.get, hash_max_bytes=hashes.max_bytes)
    assert again.exe_fd is not None  # python is another binary
    os.close(again.exe_fd)


def test_a_gone_process_is_marked_unreadable_in_field_order() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    read = procfs.read_process(child.pid, cached_sha256=lambda key: None, hash_max_bytes=1)
    assert read.gone
    assert read.missing == [
        "ppid",
        "exe",
        "argv",
        "user",
        "uid",
        "start_time_ns",
        "exe_sha256",
        "cgroup",
        "cwd",
    ]


def test_a_kernel_thread_has_no_exe_and_that_is_not_missing() -> None:
    read = procfs.read_process(2)  # kthreadd
    if read.gone:
        return  # no kernel threads visible (a PID namespace)
    assert read.kernel_thread and read.exe == "" and read.argv == [] and read.missing == []


def test_scan_lists_this_process_with_its_start() -> None:
    found = procfs.scan_start_ticks()
    own = procfs.parse_stat(Path("/proc/self/stat").read_text())
    assert found[os.getpid()] == own.start_ticks
    assert set(found) <= set(procfs.list_pids()) | set(found)


def test_start_ticks_convert_to_the_wall_clock_psutil_reports() -> None:
    import psutil

    own = procfs.parse_stat(Path("/proc/self/stat").read_text())
    ours = procfs.ticks_to_wall_ns(own.start_ticks, procfs.boot_wall_ns()) / 1e9
    assert abs(ours - psutil.Process().create_time()) < 1.0  # psutil's boot time is whole seconds
