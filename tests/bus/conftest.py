"""Fixtures for bus tests: see bus_harness.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus_harness import BusEnv, make_env


@pytest.fixture
async def bus_env(tmp_path: Path) -> AsyncIterator[BusEnv]:
    env = await make_env(tmp_path)
    writer = asyncio.create_task(env.store.run())
    try:
        yield env
    finally:
        for c in env.clients:
            await c.close()
        for ch in env._channels:
            await ch.close()
        await env.bus.close()
        await env.server.stop(0)
        await env.store.close()
        await writer
