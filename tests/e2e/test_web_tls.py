"""The web port over TLS with the appliance CA's certificate: secure, __Host- session cookies."""

from __future__ import annotations

import json
import signal
import ssl
from pathlib import Path

import httpx
import pytest

from support import wait_for

pytestmark = pytest.mark.e2e


def test_dashboard_over_tls_uses_the_appliance_ca_and_secure_cookies(
    appliance_factory, tmp_path: Path
) -> None:
    cfg = tmp_path / "amoskys.toml"
    cfg.write_text('[web]\ntls = "on"\n')
    app = appliance_factory("--config", str(cfg))
    data = app.data_dir
    # readiness over HTTPS (wait_ready polls plain HTTP): first the ports, then /readyz with the CA
    run_json = data / "run.json"
    wait_for(
        lambda: run_json.exists() and json.loads(run_json.read_text())["pid"] == app.proc.pid, what="run.json"
    )
    app.info = json.loads(run_json.read_text())
    ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.crt"))
    base = f"https://localhost:{app.info['web']['port']}"
    with httpx.Client(base_url=base, verify=ctx) as web:
        wait_for(lambda: web.get("/readyz").status_code == 200, timeout=15, what="ready over TLS")
        assert web.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
        password = (data / "admin-password").read_text().strip()
        r = web.post("/api/v1/login", json={"name": "admin", "password": password})
        cookie = r.headers["set-cookie"]
        assert r.status_code == 200 and cookie.startswith("__Host-amoskys_session=")
        assert (
            "Secure" in cookie
            and "HttpOnly" in cookie
            and "SameSite=strict" in cookie.replace("Strict", "strict")
        )
        assert web.get("/api/v1/me").json()["user"] == "admin"
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=base) as untrusting:
        untrusting.get("/healthz")  # the system trust store does not know the appliance CA
    app.signal(signal.SIGTERM)
    assert app.wait_exit(timeout=10) == 0
