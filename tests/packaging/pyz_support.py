"""The single-file build for the packaging tests: built once per test session from this tree
(scripts/build_pyz.py; downloaded wheels and the dependencies' tree stay cached under build/pyz/), and
run the way an operator runs it: by path, found through its `#!/usr/bin/env python3` line with only
the system's directories on PATH, outside the source tree, with no venv and no PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What the unit's environment holds besides SHIV_ROOT: systemd's default PATH, nothing of the venv.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build(out: Path) -> Path:
    """Build the zipapp for this machine to `out` (raises with the build's output when it fails)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_pyz.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"scripts/build_pyz.py exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return out


def clean_env(shiv_root: Path, home: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing of this test run in it: no venv, no PYTHONPATH, no AMOSKYS_*."""
    env = {"PATH": SYSTEM_PATH, "SHIV_ROOT": str(shiv_root), "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def pids_running(needle: str) -> list[int]:
    """Processes whose command line mentions `needle` (a path unique to one test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if needle.encode() in cmdline:
            found.append(int(entry.name))
    return found
