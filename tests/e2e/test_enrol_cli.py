"""Token enrolment as an operator does it, with real processes: `amoskys agents token` on a running
appliance prints one line; run on the endpoint, `amoskys agent enroll` makes the keys there and gets
a certificate. A good token works once; a reused, an expired or a wrong-CA-fingerprint one is refused."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from support import RunningAppliance, amoskys, http_get, wait_for

pytestmark = [pytest.mark.e2e]


def token_line(app: RunningAppliance, name: str, *extra: str) -> list[str]:
    result = amoskys("agents", "token", name, "--data-dir", str(app.data_dir), *extra)
    line = result.stdout.strip()
    assert line.startswith("amoskys agent enroll "), result.stdout
    assert "valid until" in result.stderr
    return shlex.split(line)[1:]  # the arguments after `amoskys`


def run_line(args: list[str], identity: Path, *, check: bool = True):  # type: ignore[no-untyped-def]
    return amoskys(*args, "--identity", str(identity), check=check)


def metric(app: RunningAppliance, outcome: str) -> float:
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200
    prefix = f'amoskys_bus_enrolments_total{{outcome="{outcome}"}} '
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def test_a_good_token_works_once(appliance_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready()
    assert app.info["enrol"]["port"] > 0
    args = token_line(app, "edge-1")
    assert f"127.0.0.1:{app.bus_port}" in args

    first = run_line(args, tmp_path / "b1")

    assert "enrolled as 'edge-1'" in first.stdout
    bundle = json.loads((tmp_path / "b1" / "bundle.json").read_text())
    assert bundle["name"] == "edge-1" and bundle["bus_address"] == f"127.0.0.1:{app.bus_port}"
    listed = json.loads(amoskys("agents", "list", "--json", "--data-dir", str(app.data_dir)).stdout)
    assert [(a["name"], bool(a["cert_expires"])) for a in listed] == [("edge-1", True)]

    again = run_line(args, tmp_path / "b2", check=False)

    assert again.returncode == 2
    assert "used already" in again.stderr
    assert not (tmp_path / "b2" / "client.key").exists()
    assert metric(app, "reused") == 1
    assert metric(app, "enrolled") == 1


def test_expired_and_wrong_ca_fingerprint_tokens_are_refused(appliance_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready()
    issued = time.time()
    expiring = token_line(app, "edge-2", "--ttl", "1s")
    args = token_line(app, "edge-3")
    wait_for(lambda: time.time() > issued + 1.5, timeout=5, what="the first token to expire")

    expired = run_line(expiring, tmp_path / "b0", check=False)

    assert expired.returncode == 2
    assert "expired" in expired.stderr
    assert metric(app, "expired") == 1

    wrong = "ab" * 32  # what an operator would see when the line was altered, or the CA is another
    refused = run_line(with_flag(args, "--ca-fingerprint", wrong), tmp_path / "b1", check=False)

    assert refused.returncode == 2
    assert "nothing was sent" in refused.stderr
    assert not (tmp_path / "b1" / "client.key").exists()
    assert "enrolled as 'edge-3'" in run_line(args, tmp_path / "b2").stdout  # the token was never spent


def test_a_token_issued_on_a_stopped_data_dir_works_once_the_appliance_runs(  # type: ignore[no-untyped-def]
    appliance_factory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    amoskys("certs", "init", "--data-dir", str(data))
    issued = amoskys("agents", "token", "edge-4", "--data-dir", str(data), "--bus-address", "127.0.0.1:50051")
    args = shlex.split(issued.stdout.strip())[1:]
    assert "--enrol-port" not in args  # the default: the bus port + 1
    app = appliance_factory(data_dir=data)
    app.wait_ready()
    enrol_port = str(app.info["enrol"]["port"])
    here = [*with_flag(args, "--bus", f"127.0.0.1:{app.bus_port}"), "--enrol-port", enrol_port]

    assert "enrolled as 'edge-4'" in run_line(here, tmp_path / "b").stdout
    _, body = http_get(app.web_url + "/metrics")
    assert 'amoskys_pki_cert_expiry_timestamp_seconds{cert="agent:edge-4"}' in body.decode()
