"""The single-file build (`make dist`): every sub-command an operator needs runs from the one file,
from a directory without the source tree, with the system's python3 only; templates, static files and
the sample config load from inside it; a `run` becomes ready and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import platform
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import psutil
import pytest
from pyz_support import ROOT, clean_env, pids_running

from amoskys import __version__

from support import free_port, http_get, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ARCH = platform.machine()


def _run(pyz: Path, where: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(pyz), *args],
        cwd=where,
        env=clean_env(where / "shiv", where),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def outside(tmp_path: Path, pyz: Path) -> tuple[Path, Path]:
    """A directory with nothing of the source tree but a copy of the shipped amoskys.toml, and the
    build copied next to it, read-only (0555)."""
    where = tmp_path / "box"
    where.mkdir()
    shutil.copy(ROOT / "amoskys.toml", where / "amoskys.toml")
    copy = where / "amoskys.pyz"
    shutil.copy(pyz, copy)
    copy.chmod(0o555)
    return where, copy


def test_the_file_holds_amoskys_its_package_data_and_native_wheels_for_cpython_311_to_313(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as zf:
        names = set(zf.namelist())
    site = "site-packages/"
    for data in ("amoskys/templates/overview.html", "amoskys/static/app.css", "amoskys/samples/header.toml"):
        assert site + data in names, data
    assert site + "amoskys/collectors/process/sample.toml" in names
    assert site + "amoskys/proto/events_pb2.py" in names
    for version in ("311", "312", "313"):
        for ext in ("msgspec/_core", "grpc/_cython/cygrpc"):
            assert any(n.startswith(f"{site}{ext}.cpython-{version}-{ARCH}") for n in names), (ext, version)
    assert not any(n.startswith((site + "tests/", site + "benchmarks/")) for n in names)


def test_version_check_config_and_doctor_run_from_the_file_outside_the_source_tree(
    outside: tuple[Path, Path],
) -> None:
    where, pyz = outside
    version = _run(pyz, where, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"amoskys {__version__}"), version.stderr
    # the first start unpacked the libraries into SHIV_ROOT, not next to the file
    assert list((where / "shiv").glob("amoskys.pyz_*/site-packages/amoskys/templates/overview.html"))

    checked = _run(pyz, where, "check-config", "amoskys.toml")
    assert (checked.returncode, checked.stdout.strip()) == (0, "amoskys.toml: ok"), checked.stderr

    # the sample config is read from inside the file (importlib.resources) and is the shipped one
    sample = _run(pyz, where, "config", "sample")
    assert sample.returncode == 0 and sample.stdout == (ROOT / "amoskys.toml").read_text()

    data_dir = where / "data"
    doctor = _run(pyz, where, "doctor", "--config", "amoskys.toml", "--data-dir", str(data_dir), "--json")
    report = json.loads(doctor.stdout)
    assert doctor.returncode == report["exit_code"] in (0, 2), doctor.stderr
    assert report["findings"] and all({"subject", "status", "message"} <= set(f) for f in report["findings"])
    assert "Traceback" not in doctor.stderr
    assert not data_dir.exists()  # read-only


def test_an_interpreter_the_file_holds_no_extensions_for_is_refused_with_the_reason(
    outside: tuple[Path, Path],
) -> None:
    where, pyz = outside
    assert _run(pyz, where, "--version").returncode == 0  # unpacked
    (targets,) = (where / "shiv").glob("amoskys.pyz_*/site-packages/pyz-targets.json")
    assert json.loads(targets.read_text()) == {"arch": ARCH, "pythons": ["3.11", "3.12", "3.13"]}
    targets.write_text(json.dumps({"arch": ARCH, "pythons": ["3.99"]}))
    refused = _run(pyz, where, "--version")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("amoskys: error: this file runs on CPython 3.99, not cpython 3.")
    targets.write_text(json.dumps({"arch": "riscv64", "pythons": ["3.11", "3.12", "3.13"]}))
    refused = _run(pyz, where, "--version")
    assert refused.returncode == 1 and "this file is built for riscv64" in refused.stderr


def test_run_from_the_file_serves_its_pages_and_assets_and_stops_on_sigterm(
    outside: tuple[Path, Path],
) -> None:
    where, pyz = outside
    port = free_port()
    log = (where / "run.log").open("wb")
    listen = ["--web-listen", f"127.0.0.1:{port}", "--bus-listen", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [str(pyz), "run", "--config", "amoskys.toml", "--data-dir", str(where / "data"), *listen],
        cwd=where,
        env=clean_env(where / "shiv", where, AMOSKYS_LOG_LEVEL="info"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode}:\n{(where / 'run.log').read_text()}")
            return http_get(url + "/readyz")[0] == 200

        wait_for(ready, timeout=60, what="the appliance from the file to be ready")
        status, page = http_get(url + "/login")  # a template, rendered
        assert status == 200 and b"<form" in page
        status, css = http_get(url + "/static/app.css")
        assert status == 200 and css == (ROOT / "amoskys" / "static" / "app.css").read_bytes()
        children = psutil.Process(proc.pid).children(recursive=True)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (where / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [c.pid for c in children if c.is_running()]
    assert pids_running(str(pyz)) == []
