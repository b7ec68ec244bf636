"""Fixtures for dashboard tests: see web_harness.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from web_harness import Web, close_web, make_web


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    w = await make_web(tmp_path)
    try:
        yield w
    finally:
        await close_web(w)
