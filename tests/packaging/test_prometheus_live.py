"""Debian's prometheus scraping a real `amoskys run` (1 s scrape and evaluation, the bearer token of
[web] metrics_token_file) with the shipped rules, one of them at `for: 0s`: stopping a collector
through the CLI makes AmoskysCollectorStopped fire."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import ROOT, amoskys, free_port, http_get, require_tool, wait_for

RULES = ROOT / "packaging" / "prometheus" / "amoskys.rules.yml"
APPLIANCE = """\
[web]
metrics_token_file = "{token}"
[bus]
enrol_listen = "off"
[detections]
enabled = false
[collectors.heartbeat]
interval_seconds = 1.0
[collectors.host]
interval_seconds = 1.0
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[collectors.snmp]
enabled = false
"""


def rules_with_stopped_at_once(path: Path) -> None:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "AmoskysCollectorStopped":
                rule["for"] = "0s"
    path.write_text(yaml.safe_dump(rules))


def api(base: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    status, body = http_get(f"{base}{path}{query}")
    assert status == 200, (status, body[:300])
    return json.loads(body)["data"]


@pytest.mark.e2e
@pytest.mark.needs_tool
def test_a_stopped_collector_fires_its_alert_in_prometheus(tmp_path: Path, appliance_factory) -> None:  # type: ignore[no-untyped-def]
    prometheus = require_tool("prometheus", "prometheus")
    token = tmp_path / "metrics-token"
    token.write_text("s3cret-metrics-token\n")
    token.chmod(0o600)
    conf = tmp_path / "amoskys.toml"
    conf.write_text(APPLIANCE.format(token=token))
    app = appliance_factory("--config", str(conf))
    app.wait_ready(timeout=30)
    assert http_get(app.web_url + "/metrics")[0] == 401  # the token is required

    rules_with_stopped_at_once(tmp_path / "amoskys.rules.yml")
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "amoskys.rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": "amoskys",
                        "authorization": {"type": "Bearer", "credentials_file": str(token)},
                        "static_configs": [{"targets": [app.web_url.removeprefix("http://")]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "prometheus.log", "wb")  # closed below, after the process
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            return http_get(base + "/-/ready")[0] == 200

        wait_for(ready, timeout=30, what="prometheus ready")

        def scraped_running() -> bool:
            q = 'amoskys_collector_state{collector="host",state="running"} == 1'
            return bool(api(base, "/api/v1/query", query=q)["result"])

        wait_for(scraped_running, timeout=30, what="prometheus to scrape the host collector running")
        assert not _firing(base), "nothing is stopped yet"

        amoskys("collectors", "stop", "host", "--data-dir", str(app.data_dir))

        def fired() -> list[dict[str, Any]]:
            return _firing(base)

        [alert] = wait_for(fired, timeout=30, what="AmoskysCollectorStopped to fire")
        assert alert["labels"]["collector"] == "host" and alert["labels"]["severity"] == "warning"
        assert "collector host stopped by an operator" in alert["annotations"]["summary"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _firing(base: str) -> list[dict[str, Any]]:
    return [
        a
        for a in api(base, "/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == "AmoskysCollectorStopped" and a["state"] == "firing"
    ]
