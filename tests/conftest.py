"""Fixtures shared by every test folder (helpers live in support.py, importable by name)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import support
from support import RunningAppliance, start_appliance


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
