"""Read-only commands create nothing: a mistyped --data-dir is an error naming it, not a new appliance."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support import ROOT, amoskys, require_root, require_tool

pytestmark = pytest.mark.e2e

READ_ONLY = [
    ("agents", "list"),
    ("agents", "revoke", "edge-1"),
    ("users", "list"),
    ("users", "remove", "ops"),
    ("certs", "renew"),
    ("events", "export"),
]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_missing_data_dir_is_named_and_not_created(tmp_path: Path, command: tuple[str, ...]) -> None:
    typo = tmp_path / "typo"
    result = amoskys(*command, "--data-dir", str(typo), check=False)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and str(typo) in result.stderr
    assert tree(tmp_path) == []


def test_only_certs_init_and_run_make_a_data_dir_and_reads_make_no_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert "created in" in amoskys("certs", "init", "--data-dir", str(data)).stdout
    before = tree(data)
    assert "pki/ca.crt" in before and "events.db" not in before
    for command in [("agents", "list"), ("users", "list"), ("events", "export")]:
        result = amoskys(*command, "--data-dir", str(data), check=False)
        assert result.returncode == 2 and "no event store at" in result.stderr, result
    assert tree(data) == before
    # a data dir without a CA (made by hand) is not given one by `certs renew`
    bare = tmp_path / "bare"
    bare.mkdir()
    result = amoskys("certs", "renew", "--data-dir", str(bare), check=False)
    assert result.returncode == 2 and "no appliance CA" in result.stderr
    assert tree(bare) == []


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_an_unreadable_store_is_one_line_and_exit_2() -> None:
    require_root("reads the store as `nobody`, through setpriv")
    setpriv = require_tool("setpriv", "util-linux")
    base = Path(tempfile.mkdtemp(prefix="amoskys-unreadable-"))  # outside pytest's 0700 tmp dirs
    try:
        base.chmod(0o755)
        data = base / "data"
        amoskys("certs", "init", "--data-dir", str(data))
        amoskys(
            "users",
            "add",
            "ops",
            "--password-stdin",
            "--data-dir",
            str(data),
            input="a-long-enough-password\n",
        )
        data.chmod(0o755)
        prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")
        for unreadable in (data / "events.db", data):  # the file, then the whole data dir
            unreadable.chmod(0o700 if unreadable.is_dir() else 0o600)
            result = subprocess.run(
                [*prefix, sys.executable, "-m", "amoskys", "events", "export", "--data-dir", str(data)],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            )
            assert result.returncode == 2, result
            assert result.stderr.count("\n") == 1 and "events.db" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
