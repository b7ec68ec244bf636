"""Fixtures for bus tests: see bus_harness.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus_harness import BusEnv, running_env


@pytest.fixture
async def bus_env(tmp_path: Path) -> AsyncIterator[BusEnv]:
    async with running_env(tmp_path) as env:
        yield env
