"""Attack: a data dir that already exists 0755 (systemd's StateDirectory default) used to be kept as
it was, and the store's files came out 0644 under a 022 umask — another local user could read the
password hashes and every event. The appliance must tighten the dir to 0700 at start and create
every file in it without group/other bits."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from support import require_root, require_tool

pytestmark = [pytest.mark.e2e]


def _loose(root: Path) -> list[str]:
    """Every regular file or dir under root (recursively) with a group or other permission bit."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and st.st_mode & 0o077:
                out.append(f"{p.relative_to(root)} {stat.filemode(st.st_mode)}")
    return out


def test_a_0755_data_dir_is_tightened_and_every_file_is_private(appliance_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    old = os.umask(0o022)  # the child inherits it: what a service manager typically hands over
    try:
        app = appliance_factory(data_dir=data)
    finally:
        os.umask(old)
    app.wait_ready(timeout=60)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert (data / "events.db").exists()
    assert _loose(data) == []


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_a_0755_data_dir_owned_by_someone_else_is_refused_in_one_line(appliance_factory) -> None:
    require_root("runs as root to drop to `nobody` with setpriv, on a dir root owns")
    setpriv = require_tool("setpriv", "util-linux")
    home = Path(tempfile.mkdtemp(prefix="amoskys-perms-"))  # outside pytest's 0700 tmp dirs
    try:
        home.chmod(0o755)
        data = home / "data"
        data.mkdir(mode=0o755)
        prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")
        app = appliance_factory(data_dir=data, env={"HOME": str(home)}, prefix=prefix)
        assert app.proc.wait(timeout=60) == 2, app.log()
        errors = [line for line in app.log().splitlines() if line.startswith("amoskys: error: ")]
        assert len(errors) == 1, app.log()
        assert f"data dir {data} is mode 0755" in errors[0] and "fix: chown" in errors[0], errors[0]
        assert "Traceback" not in app.log()
        assert stat.S_IMODE(data.stat().st_mode) == 0o755
    finally:
        shutil.rmtree(home, ignore_errors=True)
