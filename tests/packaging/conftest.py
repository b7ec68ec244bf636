"""Fixtures of the packaging tests: the single-file build, made once per session (pyz_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyz_support


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/amoskys.pyz as `make dist` builds it, for this machine, in a directory of its own."""
    return pyz_support.build(tmp_path_factory.mktemp("dist") / "amoskys.pyz")
