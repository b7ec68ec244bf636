"""Attack: read who uses the dashboard from /metrics. A viewer with a distinctive name opens the live
event stream and stops reading it, so its subscription drops events; the drop counter's label must
name the kind of subscriber, never the user (the user stays in the logs)."""

from __future__ import annotations

import re
import socket
from contextlib import closing

import httpx
import pytest

from support import amoskys, http_get, wait_for

pytestmark = [pytest.mark.e2e]

VIEWER = "zorro-lookout-7731"
VIEWER_PASSWORD = "a viewer's long password"


def _stalled_stream(web_url: str, cookies: httpx.Cookies) -> socket.socket:
    """Open /api/v1/stream with a tiny receive window and never read it: the appliance's buffers
    fill, and the subscription behind the stream drops its oldest events."""
    host, port = web_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    sock.sendall(f"GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
    assert sock.recv(12) == b"HTTP/1.1 200", "the viewer's stream was not opened"
    return sock


def _dropped(metrics: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^amoskys_bus_subscriber_dropped_total\{[^}]*\} (\S+)$", metrics, re.M)
    )


def test_metrics_never_name_a_dashboard_user(appliance_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    data = str(app.data_dir)
    amoskys(
        "users", "add", VIEWER, "--role", "viewer", "--password-stdin", "--data-dir", data,
        input=VIEWER_PASSWORD + "\n",
    )  # fmt: skip
    bundle = tmp_path / "bundle"
    amoskys("agents", "enroll", "load", "--role", "loadgen", "--out", str(bundle), "--data-dir", data)

    with httpx.Client(base_url=app.web_url, timeout=30) as viewer:
        r = viewer.post("/api/v1/login", json={"name": VIEWER, "password": VIEWER_PASSWORD})
        assert r.status_code == 200, r.text
        with closing(_stalled_stream(app.web_url, viewer.cookies)):
            bus = f"127.0.0.1:{app.bus_port}"

            def dropped() -> str | None:
                amoskys(
                    "loadgen", "--identity", str(bundle), "--bus", bus,
                    "--events", "20000", "--batch", "500", "--quiet",
                )  # fmt: skip
                status, body = http_get(app.web_url + "/metrics")
                assert status == 200
                text = body.decode()
                return text if _dropped(text) > 0 else None

            metrics = wait_for(dropped, timeout=120, interval=0, what="the stalled stream to drop events")

    assert VIEWER not in metrics, [line for line in metrics.splitlines() if VIEWER in line]
    assert 'amoskys_bus_subscriber_dropped_total{subscriber="sse"}' in metrics
    # who dropped how many is in the log, where the operator reads it (once the stream has ended)
    wait_for(
        lambda: [
            e for e in app.log_events() if e.get("event") == "sse_stream_dropped" and e.get("user") == VIEWER
        ],
        timeout=30,
        what="the appliance to log the viewer's dropped events",
    )
