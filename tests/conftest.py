"""Fixtures shared by every test folder (helpers live in support.py, importable by name)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import blocking
import pytest
import structlog
from blocking import no_blocking_on_the_loop

import support
from support import RunningAppliance, start_appliance


@pytest.fixture(scope="session", autouse=True)
def _no_blocking_on_the_loop() -> Iterator[None]:
    """Any blocking call that product code makes on a running event loop fails the test that made it
    (tests/blocking.py holds the detector and its one allow-list)."""
    with no_blocking_on_the_loop():
        yield


@pytest.fixture(autouse=True)
def _no_swallowed_blocking_calls() -> Iterator[None]:
    """Fail the test at teardown for every BlockingError raised while it ran, so one that product code
    caught (the supervisor restarts a crashed collector) still fails it, by name."""
    blocking.findings.clear()
    yield
    if blocking.findings:
        found = "\n  ".join(dict.fromkeys(blocking.findings))
        blocking.findings.clear()
        pytest.fail(f"blocking calls on the event loop (see tests/blocking.py):\n  {found}", pytrace=False)


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs a command in-process (`amoskys.cli.main`) configures structlog and the root
    logger for the whole process (cached loggers included), which would blind later tests that read
    logs as data: put both back as they were."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    if structlog.get_config() != saved:
        structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Tell support.py which test runs (its setup, call and teardown), so require_root and require_tool
    fail a test that lacks the needs_root / needs_tool marker."""
    support.running_test = item
    try:
        return (yield)
    finally:
        support.running_test = None


@pytest.fixture
def appliance_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[RunningAppliance] = []

    def factory(*extra: str, data_dir: Path | None = None, **kw) -> RunningAppliance:  # type: ignore[no-untyped-def]
        d = data_dir or tmp_path / "data"
        app = start_appliance(d, tmp_path / f"amoskys-{len(started)}.log", *extra, **kw)
        started.append(app)
        return app

    yield factory
    for app in started:
        if app.proc.poll() is None:
            app.proc.send_signal(signal.SIGKILL)
            app.proc.wait(timeout=10)
    # each child ran the CPU-stall guard (tests/stall_guard.py): a loop callback over 100 ms of CPU
    stalls = support.stall_failures(started)
    if stalls:
        pytest.fail(stalls, pytrace=False)
    # each child ran the blocking-call detector (tests/child_site/sitecustomize.py), which logs
    found = [
        f"{app.log_path.name}: {line}" for app in started for line in support.blocking_findings(app.log_path)
    ]
    if found:
        listed = "\n  ".join(found)
        pytest.fail(
            f"blocking calls on an appliance's event loop (see tests/blocking.py):\n  {listed}", pytrace=False
        )
