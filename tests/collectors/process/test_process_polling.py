"""Polling mode with real processes: in-process, and unprivileged (as nobody, via setpriv)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from process_harness import EXEC, EXIT, Harness, require_root, spawn

from support import ROOT, require_tool, wait_for

SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")


async def test_polling_sees_a_long_lived_child_start_and_end(tmp_path: Path) -> None:
    async with Harness(tmp_path, mode="polling", poll_interval_seconds=0.1) as h:
        assert h.mode == 'polling (mode = "polling" in the config)'
        child = spawn([SLEEP, "30"])
        [ex] = await h.eventually(lambda: h.processes(EXEC, child.pid), what="the child's exec")
        child.send_signal(signal.SIGTERM)
        await asyncio.to_thread(child.wait)
        [ev] = await h.eventually(lambda: h.processes(EXIT, child.pid), what="the child's exit")
    [exec_envelope] = h.envelopes(EXEC, child.pid)
    assert exec_envelope.ts_ns == ex.start_time_ns  # found by polling: stamped with its start
    assert ex.ppid == os.getpid() and list(ex.argv) == [SLEEP, "30"]
    assert ex.exe == SLEEP or "exe" in ex.unreadable
    assert not ev.HasField("exit_code") and not ev.HasField("exit_signal")
    assert "exit_code" in ev.unreadable
    assert ev.lifetime_ns > 0 and ev.start_time_ns == ex.start_time_ns
    assert h.ctx.metrics.registry.get_sample_value("amoskys_process_mode", {"mode": "polling"}) == 1


async def test_polling_does_not_repeat_processes_of_the_first_snapshot(tmp_path: Path) -> None:
    child = spawn([SLEEP, "30"])
    try:
        async with Harness(tmp_path, mode="polling", poll_interval_seconds=0.1) as h:
            ticks = h.ctx.busy_seconds
            await h.eventually(lambda: h.ctx.busy_seconds > ticks, what="a poll after the snapshot")
            marker = spawn([SLEEP, "30"])  # a process started later *is* an exec
            await h.eventually(lambda: h.processes(EXEC, marker.pid), what="the later child's exec")
            marker.kill()
            marker.wait()
    finally:
        child.kill()
        child.wait()
    assert len(h.processes(pid=child.pid)) == 1  # its snapshot only: no exec from the first diff


class LineReader:
    """Collects a child's stdout lines in a thread (so the test can wait with a deadline)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self._thread.start()

    def _run(self, proc: subprocess.Popen[str]) -> None:
        if proc.stdout is None:
            return
        for line in proc.stdout:
            self.lines.append(line)

    def objects(self) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(line) for line in list(self.lines)]

    def join(self) -> None:
        self._thread.join(timeout=10)


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_unprivileged_run_falls_back_to_polling_and_sees_a_child(tmp_path: Path) -> None:
    require_root()  # to switch to nobody (CI runs as root)
    setpriv = require_tool("setpriv", "util-linux")
    runner = [
        setpriv,
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        sys.executable,
        "-m",
        "amoskys.collectors.process",
        "--poll-interval",
        "0.1",
        "--until-stdin-closes",
    ]
    stderr = (tmp_path / "stderr").open("w")
    collector = subprocess.Popen(
        runner, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT
    )
    stderr.close()
    reader = LineReader(collector)
    child = None
    try:
        first = wait_for(lambda: reader.objects()[:1], timeout=30, what="the mode line")[0]
        assert first == {"mode": "polling (netlink needs CAP_NET_ADMIN)"}, (tmp_path / "stderr").read_text()
        wait_for(
            lambda: any(o.get("process", {}).get("kind") == "SNAPSHOT" for o in reader.objects()),
            what="the first snapshot",
        )
        child = subprocess.Popen([SLEEP, "30"])

        def events_of(kind: str) -> list[dict]:  # type: ignore[type-arg]
            return [
                o["process"]
                for o in reader.objects()
                if o.get("process", {}).get("kind") == kind and o["process"]["pid"] == child.pid
            ]

        [ex] = wait_for(lambda: events_of("EXEC"), timeout=10, what="the child's exec, seen by nobody")
        assert ex["argv"] == [SLEEP, "30"] and ex["user"] == "root"
        assert "exe" in ex["unreadable"]  # nobody may not read root's /proc/<pid>/exe
        started = time.monotonic()
        child.kill()
        child.wait()
        [ev] = wait_for(lambda: events_of("EXIT"), timeout=10, what="the child's exit, seen by nobody")
        assert "exit_code" in ev["unreadable"] and time.monotonic() - started < 10
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if collector.stdin is not None:
            collector.stdin.close()
        collector.wait(timeout=30)
        reader.join()
        if collector.stdout is not None:
            collector.stdout.close()
    assert collector.returncode == 0
    summary = reader.objects()[-1]["summary"]
    assert summary["published"]["exec/polling"] >= 1 and summary["published"]["exit/polling"] >= 1


async def test_polling_reports_the_working_directory_of_a_started_process(tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    child = spawn([SLEEP, "30"], cwd=workdir)
    try:
        async with Harness(tmp_path / "h", mode="polling", poll_interval_seconds=0.1) as h:
            await h.eventually(lambda: h.processes(pid=child.pid), what="the child")
            await h.collector.snapshot()
    finally:
        child.kill()
        child.wait()
    seen = h.processes(pid=child.pid)
    assert seen and all(p.cwd == str(workdir) and "cwd" not in p.unreadable for p in seen)
