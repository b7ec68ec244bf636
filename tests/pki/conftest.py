"""Fixtures for the tests of amoskys.pki: see pki_support.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pki_support import ensure

from amoskys.pki.layout import ApplianceCredentials


@pytest.fixture
def creds(tmp_path: Path) -> ApplianceCredentials:
    return ensure(tmp_path / "pki")
