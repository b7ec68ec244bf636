"""`amoskys run` that cannot start: one line on stderr naming what to change, exit 2, nothing left running."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import RunningAppliance, amoskys, require_root, require_tool

pytestmark = pytest.mark.e2e

#: Seconds a failed start-up may take to exit (a hang would run into it).
EXIT_DEADLINE_SECONDS = 15


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket of this test for as long as it runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _failed_with(app: RunningAppliance) -> str:
    """Wait for the exit, check it is 2, and return the one error line (JSON log lines aside)."""
    assert app.proc.wait(timeout=EXIT_DEADLINE_SECONDS) == 2, app.log()
    log = app.log()
    assert "Traceback" not in log, log
    others = [line for line in log.splitlines() if line.strip() and not line.startswith("{")]
    assert len(others) == 1, log
    assert others[0].startswith("amoskys: error: "), log
    assert log.rstrip().splitlines()[-1] == others[0], log
    return others[0]


def test_web_port_in_use(appliance_factory, taken_port: int) -> None:
    app = appliance_factory("--web-listen", f"127.0.0.1:{taken_port}")
    line = _failed_with(app)
    assert f"web port 127.0.0.1:{taken_port} is in use" in line
    assert "[web] listen" in line and "--web-listen" in line


def test_bus_port_in_use(appliance_factory, taken_port: int) -> None:
    app = appliance_factory("--bus-listen", f"127.0.0.1:{taken_port}")
    line = _failed_with(app)
    assert f"bus port 127.0.0.1:{taken_port} is in use" in line
    assert "[bus] listen" in line and "--bus-listen" in line


def test_corrupt_ca_certificate(appliance_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    amoskys("certs", "init", "--data-dir", str(data))
    (data / "pki" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    app = appliance_factory(data_dir=data)
    line = _failed_with(app)
    assert "ca.crt" in line


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_data_dir_not_writable(appliance_factory) -> None:
    require_root("runs as root to drop to `nobody` with setpriv (root may write anywhere)")
    setpriv = require_tool("setpriv", "util-linux")
    home = Path(tempfile.mkdtemp(prefix="amoskys-nobody-"))
    try:
        home.chmod(0o755)
        data = home / "data"
        data.mkdir(mode=0o755)  # root's: nobody may read it but not write in it
        prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")
        app = appliance_factory(data_dir=data, env={"HOME": str(home)}, prefix=prefix)
        line = _failed_with(app)
        assert f"data dir {data}" in line
    finally:
        shutil.rmtree(home, ignore_errors=True)
