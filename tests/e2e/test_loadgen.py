"""`amoskys loadgen` as a new user runs it, against a real appliance: every way of not getting through is
one line on stderr and exit 2 within the connect timeout (never silence, never a traceback), and a good
run publishes events the dashboard marks synthetic and leaves out of its overview totals."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from amoskys.community_id import community_id_of

from support import ROOT, RunningAppliance, amoskys, free_port, start_appliance

pytestmark = pytest.mark.e2e

#: Small, so the tests are quick; `within` below allows for a busy 2-core machine on top.
CONNECT_TIMEOUT = 1.0
MAX_EVENTS_PER_BATCH = 50
MAX_MESSAGE_BYTES = 16384  # about 90 loadgen events
#: The bus certificate names only `localhost`: dialling 127.0.0.1 is "an address not in the SANs".
CONFIG = f"""
[bus]
server_dns_names = ["localhost"]
server_ip_addresses = []
max_events_per_batch = {MAX_EVENTS_PER_BATCH}
max_message_bytes = {MAX_MESSAGE_BYTES}
"""


@dataclass
class Bus:
    app: RunningAppliance
    config: Path
    work: Path

    @property
    def port(self) -> int:
        return self.app.bus_port

    def enroll(self, name: str, role: str = "loadgen") -> Path:
        out = self.work / f"bundle-{name}"
        amoskys(
            "agents", "enroll", name, "--role", role, "--out", str(out),
            "--data-dir", str(self.app.data_dir), "--config", str(self.config),
            "--bus-address", f"localhost:{self.port}",  # the certificate names no IP address here
        )  # fmt: skip
        return out

    @contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """An admin's session with the dashboard."""
        password = (self.app.data_dir / "admin-password").read_text().strip()
        with httpx.Client(base_url=self.app.web_url, timeout=30) as client:
            r = client.post("/api/v1/login", json={"name": "admin", "password": password})
            assert r.status_code == 200, r.text
            yield client


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    work = tmp_path_factory.mktemp("loadgen")
    config = work / "amoskys.toml"
    config.write_text(CONFIG)
    app = start_appliance(work / "data", work / "amoskys.log", "--config", str(config))
    try:
        app.wait_ready(timeout=60)
        yield Bus(app, config, work)
    finally:
        if app.proc.poll() is None:
            app.proc.send_signal(signal.SIGKILL)
            app.proc.wait(timeout=30)


def loadgen(bundle: Path, address: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    result = amoskys(
        "loadgen", "--identity", str(bundle), "--bus", address,
        "--connect-timeout", str(CONNECT_TIMEOUT), *args,
        check=False, timeout=120,
    )  # fmt: skip
    return result, time.monotonic() - t0


def one_line_error(result: subprocess.CompletedProcess[str], elapsed: float) -> str:
    """The single stderr line of a failed run (exit 2, nothing on stdout, no traceback, in time)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    # the connect timeout, the diagnosis (at most 5 s) and the interpreter's start on a busy machine
    assert elapsed < CONNECT_TIMEOUT + 5 + 20, elapsed
    assert lines[0].startswith("amoskys: error: loadgen: "), lines[0]
    return lines[0].removeprefix("amoskys: error: loadgen: ")


def test_a_closed_port_is_one_line_and_exit_2(bus: Bus) -> None:
    address = f"127.0.0.1:{free_port()}"
    line = one_line_error(*loadgen(bus.enroll("lg-closed"), address))
    assert line == (
        f"bus {address}: connection refused, nothing listens there (is `amoskys run` up, and is this its "
        "[bus] listen address?)"
    )


def test_an_address_not_in_the_bus_certificate_names_the_names_it_carries(bus: Bus) -> None:
    bundle = bus.enroll("lg-name")
    address = f"127.0.0.1:{bus.port}"
    line = one_line_error(*loadgen(bundle, address))
    assert line == (
        f"bus {address}: TLS name '127.0.0.1' (dialled) is not in the bus certificate (its names: "
        "localhost); dial one of those or pass --server-name NAME"
    )
    # and the remedy it names works
    ok, _ = loadgen(bundle, address, "--server-name", "localhost", "--events", "10", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["acked"] == 10


def test_a_bundle_from_another_ca_is_one_line_and_exit_2(bus: Bus, tmp_path: Path) -> None:
    other = tmp_path / "other-data"
    amoskys("certs", "init", "--data-dir", str(other))
    foreign = tmp_path / "foreign"
    address = f"localhost:{bus.port}"
    amoskys(
        "agents", "enroll", "lg-foreign", "--role", "loadgen", "--out", str(foreign), "--data-dir", str(other),
        "--bus-address", address,
    )  # fmt: skip
    line = one_line_error(*loadgen(foreign, address))
    assert line.startswith(f"bus {address}: its certificate is not signed by the bundle's CA (")
    # the same client certificate with this appliance's CA file: now the bus is trusted, but it refuses
    # the client certificate
    mixed = tmp_path / "mixed"
    shutil.copytree(foreign, mixed)
    shutil.copyfile(bus.app.data_dir / "pki" / "ca.crt", mixed / "ca.crt")
    line = one_line_error(*loadgen(mixed, address))
    assert line.startswith(f"bus {address}: the bus rejected this bundle's client certificate (")


def test_a_revoked_identity_is_one_line_and_exit_2(bus: Bus) -> None:
    bundle = bus.enroll("lg-revoked")
    amoskys(
        "agents", "revoke", "lg-revoked", "--data-dir", str(bus.app.data_dir), "--config", str(bus.config)
    )
    line = one_line_error(*loadgen(bundle, f"localhost:{bus.port}", "--events", "10"))
    assert line == (
        f"bus localhost:{bus.port} refuses identity 'lg-revoked': PERMISSION_DENIED: identity 'lg-revoked' "
        "is revoked (enrol a loadgen identity on that appliance to publish there)"
    )


def test_a_batch_above_the_bus_limits_is_one_line_and_exit_2(bus: Bus) -> None:
    bundle = bus.enroll("lg-big")
    batch = MAX_EVENTS_PER_BATCH + 1
    line = one_line_error(
        *loadgen(bundle, f"localhost:{bus.port}", "--events", str(batch), "--batch", str(batch))
    )
    assert line == (
        f"bus localhost:{bus.port} refused a batch: INVALID: {batch} events in one batch; the limit is "
        f"{MAX_EVENTS_PER_BATCH} (use a smaller --batch)"
    )
    # above the message size: gRPC's own RESOURCE_EXHAUSTED, which retrying the same bytes never cures
    line = one_line_error(*loadgen(bundle, f"localhost:{bus.port}", "--events", "200", "--batch", "200"))
    assert line.startswith(f"bus localhost:{bus.port} refused a batch of ")
    assert "larger than max" in line and line.endswith("; use a smaller --batch")


def test_a_bundle_not_enrolled_for_loadgen_is_refused_before_dialling(bus: Bus) -> None:
    bundle = bus.enroll("agent-1", role="agent")
    line = one_line_error(*loadgen(bundle, f"localhost:{bus.port}"))
    assert "is enrolled with role 'agent'" in line and "--role loadgen" in line


def test_progress_goes_to_a_terminal_only(bus: Bus) -> None:
    bundle = bus.enroll("lg-tty")
    args = ["--identity", str(bundle), "--bus", f"localhost:{bus.port}", "--events", "200", "--batch", "50"]
    cmd = [sys.executable, "-m", "amoskys", "loadgen", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    piped = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert piped.returncode == 0 and piped.stderr == ""
    for quiet, shown in (([], True), (["--quiet"], False)):
        master, slave = pty.openpty()
        try:
            done = subprocess.run(
                cmd + quiet, stdout=subprocess.PIPE, stderr=slave, timeout=120, cwd=ROOT, env=env
            )
            os.close(slave)
            slave = -1
            out = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal has no writer left
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(master)
            if slave >= 0:
                os.close(slave)
        assert done.returncode == 0
        assert (b"loadgen: connecting to" in out) is shown, out
        assert b"sent 200" in done.stdout


def test_a_good_run_publishes_synthetic_events_kept_out_of_the_overview_totals(bus: Bus) -> None:
    bundle = bus.enroll("lg-good")
    t0 = time.time_ns()
    result, _ = loadgen(bundle, f"localhost:{bus.port}", "--events", "700", "--batch", "50", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not a terminal: no progress
    assert json.loads(result.stdout)["acked"] == 700
    # a second run continues the batch chain (no bus.chain_fork alert)
    again, _ = loadgen(bundle, f"localhost:{bus.port}", "--events", "100", "--batch", "50", "--json")
    assert again.returncode == 0, again.stderr

    with bus.api() as api:
        mine = api.get("/api/v1/events", params={"source": "lg-good", "limit": 500}).json()["items"]
        assert len(mine) == 500 and all(e["synthetic"] is True for e in mine)
        kinds = {e["kind"] for e in mine}
        assert kinds == {
            "process",
            "host",
            "flow",
            "snmp",
            "device",
            "alert",
            "heartbeat",
        }  # no audit, no loss
        assert all(t0 <= e["ts_ns"] <= time.time_ns() for e in mine)
        flows = [e["body"] for e in mine if e["kind"] == "flow"]
        assert flows
        for f in flows:
            assert f["community_id"] == community_id_of(
                f["src_addr"], f["dst_addr"], f["protocol"], f["src_port"], f["dst_port"]
            )
            assert t0 <= int(f["last_ts_ns"]) <= time.time_ns()
            assert int(f["last_ts_ns"]) - int(f["first_ts_ns"]) == 1_500_000_000
        real = api.get("/api/v1/events", params={"synthetic": 0, "limit": 500}).json()["items"]
        assert real and not any(e["source"].startswith("lg-") or e["synthetic"] for e in real)
        alerts = api.get("/api/v1/events", params={"kind": "alert", "synthetic": 0}).json()["items"]
        assert not [a for a in alerts if a["body"].get("rule") == "bus.chain_fork"], alerts

        overview = api.get("/api/v1/overview").json()
        counted = api.get("/api/v1/overview", params={"synthetic": 1}).json()
        synthetic_rows = overview["synthetic"]["rows"]
        assert synthetic_rows >= 810 and overview["synthetic"]["included"] is False
        assert overview["store"]["rows"] <= counted["store"]["rows"] - synthetic_rows
        assert counted["synthetic"]["included"] is True
        html = api.get("/events", params={"source": "lg-good"}).text
        assert 'class="badge synthetic"' in html
