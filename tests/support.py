"""Shared test helpers: system tools, polling, free ports, and a real `amoskys run` child process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def require_tool(command: str, package: str) -> str:
    """Path of a system tool; skips with the install command when missing (fails under CI=true)."""
    path = shutil.which(command)
    if path:
        return path
    message = f"needs `{command}`: sudo apt-get install -y {package}"
    if IN_CI:
        pytest.fail(f"{message} (CI must install it: see scripts/sysdeps.sh)")
    pytest.skip(message)


def wait_for(predicate, *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""


@dataclass
class RunningAppliance:
    """An `amoskys run` child process on free ports, with its data dir and log file."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    info: dict = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.info['web']['port']}"

    @property
    def bus_port(self) -> int:
        return int(self.info["bus"]["port"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_ready(self, timeout: float = 15.0) -> None:
        run_json = self.data_dir / "run.json"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"amoskys exited with {self.proc.returncode}:\n{self.log()}")
            if not run_json.exists():
                return False
            info = json.loads(run_json.read_text())
            if info.get("pid") != self.proc.pid:
                return False  # a run.json left by a killed predecessor
            self.info = info
            return http_get(self.web_url + "/readyz")[0] == 200

        wait_for(ready, timeout=timeout, what="amoskys to be ready")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)


def start_appliance(
    data_dir: Path,
    log_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    pass_data_dir: bool = True,
) -> RunningAppliance:
    """Start `amoskys run` on free ports; data_dir is where run.json is expected (passed with
    --data-dir unless pass_data_dir is False, for tests of the default resolution)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    full_env.update({"PYTHONUNBUFFERED": "1", "AMOSKYS_LOG_LEVEL": "info"})
    full_env.update(env or {})
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "amoskys",
        "run",
        "--web-listen",
        "127.0.0.1:0",
        "--bus-listen",
        "127.0.0.1:0",
        *extra,
    ]
    if pass_data_dir:
        cmd += ["--data-dir", str(data_dir)]
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    log_file.close()
    return RunningAppliance(proc=proc, data_dir=data_dir, log_path=log_path)


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for a server that must keep its port across restarts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def amoskys(*args: str, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run an `amoskys` sub-command to completion."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    env.update(kw.pop("env", {}))
    result = subprocess.run(
        [sys.executable, "-m", "amoskys", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        **kw,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"amoskys {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result
