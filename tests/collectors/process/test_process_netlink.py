"""Netlink mode with real processes: a 500-process burst, signals, redaction, overruns, namespaces."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_harness import EXEC, EXIT, SNAPSHOT, Harness, require_root, spawn

from amoskys.proto import events_pb2

from support import ROOT, require_tool, wait_for

HERE = Path(__file__).resolve().parent
TRUE = os.path.realpath(shutil.which("true") or "/bin/true")
SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
SH = os.path.realpath("/bin/sh")

pytestmark = pytest.mark.needs_root  # the netlink proc connector needs CAP_NET_ADMIN


def run_on_cpu(cpu: int) -> int:
    """Run `true` pinned to one CPU (so that the kernel's next message on that CPU is sent); its pid."""
    child = subprocess.Popen([TRUE], preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    child.wait()
    return child.pid


def burst(count: int) -> list[tuple[int, list[str], int]]:
    """Start `count` short-lived children at once, wait for all: (pid, argv, expected exit code).

    argv[0] is the real path of the program, as /proc/<pid>/exe shows it.
    """
    started: list[tuple[subprocess.Popen[bytes], list[str], int]] = []
    for i in range(count):
        if i % 10 == 0:
            argv, code = [SH, "-c", "exit 3"], 3
        elif i % 10 == 1:
            argv, code = [SLEEP, "0.03"], 0  # lives ≥ 20 ms: must be fully enriched
        else:
            argv, code = [TRUE], 0
        started.append((spawn(argv), argv, code))
    for child, _, _ in started:
        child.wait()
    return [(child.pid, argv, code) for child, argv, code in started]


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """What this test process's heap (Hypothesis, earlier tests) holds leaves the garbage collector's
    view, as the appliance's start-up objects should (gc.freeze): else a full collection of it stalls
    every thread for ~40 ms, and with it the /proc reads of 30 ms processes."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("frozen_heap")
async def test_burst_of_500_processes_each_has_exec_and_exit_with_its_code(tmp_path: Path) -> None:
    require_root()
    async with Harness(tmp_path, mode="netlink") as h:
        assert h.mode == "netlink"
        before_ns = time.time_ns()
        spawner = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "spawn_burst.py"), "500", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await spawner.communicate()
        children = [(pid, argv, code) for pid, argv, code in json.loads(out)]
        pids = {pid for pid, _, _ in children}

        def all_exited() -> bool:
            return pids <= {p.pid for p in h.processes(EXIT)}

        await h.eventually(all_exited, within=30, what="an exit event for each of the 500 children")
        after_ns = time.time_ns()

    me = spawner.pid
    long_lived = 0
    for pid, argv, code in children:
        execs = h.envelopes(EXEC, pid)
        exits = h.envelopes(EXIT, pid)
        assert len(execs) == 1, f"pid {pid} {argv}: {len(execs)} exec events"
        assert len(exits) == 1, f"pid {pid} {argv}: {len(exits)} exit events"
        exec_env, exit_env = execs[0], exits[0]
        ex, ev = exec_env.process, exit_env.process
        assert ex.ppid == me and ev.ppid == me, f"pid {pid}: ppid {ex.ppid}/{ev.ppid}, expected {me}"
        assert before_ns <= exec_env.ts_ns <= exit_env.ts_ns <= after_ns
        assert ev.HasField("exit_code") and ev.exit_code == code and not ev.HasField("exit_signal")
        assert ev.lifetime_ns == pytest.approx(exit_env.ts_ns - exec_env.ts_ns, abs=100_000)
        assert "ppid" not in ex.unreadable
        if ev.lifetime_ns >= 20_000_000:
            long_lived += 1
            assert ex.exe == argv[0] and list(ex.argv) == argv, f"pid {pid}: {ex}"
            assert ex.user == "root" and ex.uid == 0 and ex.cgroup and len(ex.exe_sha256) == 32
            assert list(ex.unreadable) == []
    assert long_lived >= 40  # the 50 `sleep 0.03` children
    stats = h.collector.stats
    assert stats.lost == {}  # nothing dropped by the kernel
    assert stats.enrichment["complete"] >= long_lived
    ratio = h.ctx.metrics.registry.get_sample_value("amoskys_process_enrichment_ratio")
    assert ratio == pytest.approx(stats.enrichment_ratio)


async def test_exit_by_signal_carries_the_signal_and_the_lifetime(tmp_path: Path) -> None:
    require_root()
    async with Harness(tmp_path, mode="netlink") as h:
        child = spawn([SLEEP, "30"])
        await h.eventually(lambda: h.processes(EXEC, child.pid), what="the exec of sleep 30")
        await asyncio.sleep(0.05)  # so that the lifetime below is clearly longer than that
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        [ev] = await h.eventually(lambda: h.processes(EXIT, child.pid), what="the exit of sleep 30")
    [ex] = h.processes(EXEC, child.pid)
    assert ex.exe == SLEEP and list(ex.argv) == [SLEEP, "30"] and not ex.unreadable
    assert ev.exit_signal == signal.SIGKILL and not ev.HasField("exit_code")
    assert ev.lifetime_ns >= 50_000_000
    assert (ev.exe, list(ev.argv), ev.exe_sha256) == (ex.exe, list(ex.argv), ex.exe_sha256)


async def test_a_password_in_argv_never_leaves_the_collector(tmp_path: Path) -> None:
    require_root()
    async with Harness(tmp_path, mode="netlink") as h:
        # sh -c SCRIPT NAME ARGS...: the secret is both an argument and inside the script
        child = spawn(
            ["/bin/sh", "-c", "sleep 0.3; echo --token=abc123 >/dev/null", "sh", "--password=hunter2"]
        )
        await h.eventually(lambda: h.processes(EXEC, child.pid), what="the exec")
        await h.collector.snapshot()  # while it is alive: a snapshot sees its argv too
        await asyncio.to_thread(child.wait)
        await h.eventually(lambda: h.processes(EXIT, child.pid), what="the exit")
    seen = [e for e in h.sink if e.WhichOneof("body") == "process" and e.process.pid == child.pid]
    assert {e.process.kind for e in seen} == {EXEC, SNAPSHOT, EXIT}
    for envelope in h.sink:
        data = envelope.SerializeToString()
        assert b"hunter2" not in data and b"abc123" not in data
    for e in seen:
        assert e.process.argv_redacted
        assert list(e.process.argv)[-1] == "--password=********"
        assert "--token=********" in e.process.argv[2]


async def test_forked_children_without_exec_are_reported_at_exit(tmp_path: Path) -> None:
    require_root()
    async with Harness(tmp_path, mode="netlink") as h:
        # the subshell ( ... ) is a fork of sh that never execs; it exits with 7
        child = spawn(["/bin/sh", "-c", "(sleep 0.05; exit 7); exit 0"])
        await asyncio.to_thread(child.wait)
        await h.eventually(lambda: h.processes(EXIT, child.pid), what="the shell's exit")
        exits = await h.eventually(
            lambda: [p for p in h.processes(EXIT) if p.ppid == child.pid and p.exit_code == 7],
            what="the subshell's exit",
        )
    subshell = exits[0]
    assert not h.processes(EXEC, subshell.pid)  # it never exec'd ...
    assert subshell.exe == SH and list(subshell.argv)[:2] == [
        "/bin/sh",
        "-c",
    ]  # ... it ran its parent's program
    assert subshell.lifetime_ns >= 50_000_000


async def test_overrun_becomes_a_loss_report_and_a_resync(tmp_path: Path) -> None:
    require_root()
    async with Harness(tmp_path, mode="netlink", receive_buffer_bytes=65_536) as h:
        assert h.collector.stats.snapshots == 1
        # Stall the event loop on purpose: nothing drains the 128 KiB socket buffer meanwhile.
        children = burst(300)
        stats = h.collector.stats
        # A gap shows at the next message of its CPU: exec something on every CPU, wait for them all
        markers = [await asyncio.to_thread(run_on_cpu, cpu) for cpu in sorted(os.sched_getaffinity(0))]
        await h.eventually(
            lambda: set(markers) <= {p.pid for p in h.processes(EXIT)}, what="the exits on every CPU"
        )

        def reported() -> list[events_pb2.LossReport]:
            losses = [e.loss for e in h.sink if e.WhichOneof("body") == "loss"]
            return (
                losses if stats.overruns and sum(x.count for x in losses) == sum(stats.lost.values()) else []
            )

        losses = await h.eventually(reported, what="LossReports for every lost message")
        await h.eventually(lambda: stats.snapshots >= 2, what="the resynchronising snapshot")
    for loss in losses:
        assert loss.what == "process_events" and loss.where == "process.netlink"
        assert loss.reason == "netlink_overrun" and loss.count > 0
        assert 0 < loss.window_start_ns <= loss.window_end_ns
    # every message is accounted for: seen, or counted as lost (each child: fork, exec, exit at least)
    seen = {p.pid for p in h.processes(EXIT)}
    missing = [pid for pid, _, _ in children if pid not in seen]
    assert len(missing) <= sum(stats.lost.values())
    metric = h.ctx.metrics.registry.get_sample_value
    assert (
        metric("amoskys_process_events_lost_total", {"reason": "netlink_overrun"})
        == stats.lost["netlink_overrun"]
    )


@pytest.mark.needs_tool
def test_in_a_pid_namespace_the_self_test_falls_back_to_polling() -> None:
    require_root()
    unshare = require_tool("unshare", "util-linux")
    runner = [sys.executable, "-m", "amoskys.collectors.process", "--seconds", "0.2", "--events", "none"]
    result = subprocess.run(
        [unshare, "--pid", "--fork", "--mount-proc", *runner],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith('{"mode":"polling (netlink self-test saw no exec event within 1 s'), first


async def test_a_process_that_execs_twice_has_two_exec_events(tmp_path: Path) -> None:
    require_root()
    async with Harness(tmp_path, mode="netlink") as h:
        children = [spawn([SH, "-c", f"exec {SLEEP} 0.5"]) for _ in range(20)]
        # Block the loop until every child runs sleep: both execs of each pid land in one batch
        for child in children:
            wait_for(lambda c=child: Path(f"/proc/{c.pid}/cmdline").read_bytes().startswith(SLEEP.encode()))
        pids = {c.pid for c in children}
        await asyncio.to_thread(lambda: [c.wait() for c in children])
        await h.eventually(lambda: pids <= {p.pid for p in h.processes(EXIT)}, what="every exit")
    for pid in pids:
        execs = h.processes(EXEC, pid)
        assert len(execs) == 2 and len(h.processes(EXIT, pid)) == 1
        for ex in execs:  # read after both execs: both show what /proc held then
            assert ex.exe == SLEEP and list(ex.argv) == [SLEEP, "0.5"] and len(ex.exe_sha256) == 32


async def test_an_exec_reports_the_working_directory_read_with_argv(tmp_path: Path) -> None:
    require_root()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    async with Harness(tmp_path / "h", mode="netlink") as h:
        child = spawn([SLEEP, "30"], cwd=workdir)
        try:
            [ex] = await h.eventually(lambda: h.processes(EXEC, child.pid), what="the exec of sleep 30")
        finally:
            child.kill()
            await asyncio.to_thread(child.wait)
    assert ex.cwd == str(workdir) and list(ex.argv) == [SLEEP, "30"] and not ex.unreadable
