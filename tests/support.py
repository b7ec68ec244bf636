"""Shared test helpers: what a test needs (root, system tools), a collector's context and sink, polling,
free ports, and a real `amoskys run` child process."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from amoskys import __version__
from amoskys.collectors import capabilities
from amoskys.collectors.clock import Clock, FakeClock
from amoskys.collectors.context import ApplianceInfo, CollectorContext, PublishFn
from amoskys.collectors.taps import PacketTaps
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
T = TypeVar("T")

#: The test pytest is running now (set by conftest.py), so the require_* helpers can check its markers.
running_test: pytest.Item | None = None


def _check_marked(marker: str, need: str) -> None:
    """Fail a test that needs root or a system tool without saying so: `make test-quick` selects by marker."""
    item = running_test
    if item is not None and item.get_closest_marker(marker) is None:
        pytest.fail(
            f"{item.nodeid} {need} but is not marked: add @pytest.mark.{marker} "
            "(`make test-quick` leaves out tests by their markers)",
            pytrace=False,
        )


def require_tool(command: str, package: str) -> str:
    """Path of a system tool; skips with the install command when missing (fails under CI=true).

    The test must be marked ``needs_tool``."""
    _check_marked("needs_tool", f"needs `{command}`")
    path = shutil.which(command)
    if path:
        return path
    message = f"needs `{command}`: sudo apt-get install -y {package}"
    if IN_CI:
        pytest.fail(f"{message} (CI must install it: see scripts/sysdeps.sh)")
    pytest.skip(message)


def require_file(path: Path, package: str) -> Path:
    """A data file a system package installs; skips when missing (fails under CI=true).

    The test must be marked ``needs_tool``."""
    _check_marked("needs_tool", f"needs {path}")
    if path.is_file():
        return path
    message = f"needs {path}: sudo apt-get install -y {package}"
    if IN_CI:
        pytest.fail(f"{message} (CI must install it: see scripts/sysdeps.sh)")
    pytest.skip(message)


def require_root(why: str) -> None:
    """Skip unless root, saying `why` root is needed; CI runs the tests as root, so there it fails.

    The test must be marked ``needs_root``."""
    _check_marked("needs_root", "needs root")
    if os.geteuid() == 0:
        return
    if IN_CI:
        pytest.fail(f"{why}: CI runs the tests as root")
    pytest.skip(why)


class ListSink(list[events_pb2.Envelope]):
    """A publish function that keeps what it is given: the sink is the list of published envelopes.

    ``sink = ListSink(); ctx = make_context("flow", tmp_path, publish=sink)``, or ``publish=sink`` for a
    supervisor; then ``sink`` holds every stamped envelope in publish order.
    """

    async def __call__(self, envelopes: Sequence[events_pb2.Envelope]) -> None:
        self.extend(envelopes)


def make_context(
    name: str,
    data_dir: Path,
    *,
    publish: PublishFn | None = None,
    clock: Clock | None = None,
    source: str = "box",
    metrics: Metrics | None = None,
    stamper: EnvelopeStamper | None = None,
    appliance: ApplianceInfo | None = None,
    has_capability: Callable[[str], bool] = capabilities.has_capability,
    packet_taps: PacketTaps | None = None,
) -> CollectorContext:
    """A CollectorContext as the supervisor makes one: a FakeClock unless told, its own Metrics, a
    stamper and an ApplianceInfo for `source`, and a ListSink unless `publish` is given."""
    clock = clock if clock is not None else FakeClock()
    return CollectorContext(
        name,
        publish=publish if publish is not None else ListSink(),
        stamper=stamper or EnvelopeStamper(source),
        metrics=metrics if metrics is not None else Metrics(),
        data_dir=data_dir,
        appliance=appliance or ApplianceInfo(source, __version__, "host", "appliance", clock.time_ns()),
        clock=clock,
        has_capability=has_capability,
        packet_taps=packet_taps,
    )


async def eventually(
    predicate: Callable[[], T] | Callable[[], Awaitable[T]], *, within: float = 10.0, what: str
) -> T:
    """Let the loop run until ``predicate()`` (awaited when it is a coroutine function, e.g. a store
    read) is truthy and return its value; fail after `within` seconds of real time. It polls at once,
    then after pauses growing from 1 ms to 20 ms: no fixed sleeps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = 0.001
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.02)


def wait_for(predicate, *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll predicate() until it returns a truthy value or the deadline passes (blocking: for tests
    outside the event loop; in the loop, use eventually)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""


@dataclass
class RunningAppliance:
    """An `amoskys run` child process on free ports, with its data dir and log file."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    info: dict = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.info['web']['port']}"

    @property
    def bus_port(self) -> int:
        return int(self.info["bus"]["port"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_ready(self, timeout: float = 15.0) -> None:
        run_json = self.data_dir / "run.json"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"amoskys exited with {self.proc.returncode}:\n{self.log()}")
            if not run_json.exists():
                return False
            info = json.loads(run_json.read_text())
            if info.get("pid") != self.proc.pid:
                return False  # a run.json left by a killed predecessor
            self.info = info
            return http_get(self.web_url + "/readyz")[0] == 200

        wait_for(ready, timeout=timeout, what="amoskys to be ready")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)


def start_appliance(
    data_dir: Path,
    log_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    pass_data_dir: bool = True,
) -> RunningAppliance:
    """Start `amoskys run` on free ports; data_dir is where run.json is expected (passed with
    --data-dir unless pass_data_dir is False, for tests of the default resolution)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    full_env.update({"PYTHONUNBUFFERED": "1", "AMOSKYS_LOG_LEVEL": "info"})
    full_env.update(env or {})
    # the blocking-call detector, in logging mode (tests/child_site/sitecustomize.py)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHILD_SITE), full_env.get("PYTHONPATH")]))
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "amoskys",
        "run",
        "--web-listen",
        "127.0.0.1:0",
        "--bus-listen",
        "127.0.0.1:0",
        *extra,
    ]
    if pass_data_dir:
        cmd += ["--data-dir", str(data_dir)]
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    log_file.close()
    return RunningAppliance(proc=proc, data_dir=data_dir, log_path=log_path)


#: The folder whose sitecustomize.py activates the blocking-call detector in `amoskys run` children.
CHILD_SITE = Path(__file__).resolve().parent / "child_site"
#: How a child's log line reporting a blocking call on its event loop starts (tests/blocking.py).
BLOCKING_LINE = b"Blocking call to "


def blocking_findings(log_path: Path) -> list[str]:
    """The blocking calls an `amoskys run` child reported in its log (one line each), in order."""
    try:
        lines = log_path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    found = [line.decode(errors="replace") for line in lines if line.startswith(BLOCKING_LINE)]
    return list(dict.fromkeys(found))


#: How a child's log line reporting a loop callback over 100 ms of CPU starts (tests/stall_guard.py).
STALL_LINE = b"CPU stall: "


def stall_findings(log_path: Path) -> list[str]:
    """The CPU stalls an `amoskys run` child reported in its log (one line each), in order."""
    try:
        lines = log_path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    return [line.decode(errors="replace") for line in lines if line.startswith(STALL_LINE)]


def stall_failures(apps: Sequence[RunningAppliance]) -> str:
    """The failure message for the CPU stalls these children reported ("" when none): what
    appliance_factory fails a test with at teardown."""
    found = [f"{app.log_path.name}: {line}" for app in apps for line in stall_findings(app.log_path)]
    if not found:
        return ""
    listed = "\n  ".join(found)
    return f"event-loop callbacks over 100 ms of CPU (see tests/stall_guard.py):\n  {listed}"


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for a server that must keep its port across restarts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def amoskys(*args: str, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run an `amoskys` sub-command to completion."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    env.update(kw.pop("env", {}))
    result = subprocess.run(
        [sys.executable, "-m", "amoskys", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        **kw,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"amoskys {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result
