"""Alert sinks end to end: a real process started on this box, seen by a real `amoskys run` child's
process collector, raises a Sigma alert that reaches a signed webhook, an ECS file and a syslog
server, with the sinks' series on /metrics — and the child makes no blocking call on its loop doing it
(appliance_factory fails the test otherwise)."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from sinks.harness import WebhookReceiver
from sinks.rsyslog import Rsyslog
from sinks.test_webhook import SECRET, delivered, receiver_checks
from support import RunningAppliance, http_get, require_root, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root, pytest.mark.needs_tool]

RULE = """title: Sleep in the sink test's folder
id: {id}
status: test
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/sleep'
        CurrentDirectory|endswith: '/{marker}'
    condition: selection
level: high
tags:
    - attack.execution
"""


def metric(app: RunningAppliance, line: str) -> float:
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200
    for text in body.decode().splitlines():
        if text.startswith(line + " "):
            return float(text.rsplit(" ", 1)[1])
    return 0.0


def test_an_exec_alert_reaches_webhook_ecs_file_and_syslog(appliance_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    require_root("the process collector reads the netlink proc connector")
    rsyslog = Rsyslog.make(tmp_path / "rsyslog")
    rsyslog.start()
    receiver = WebhookReceiver()
    receiver.start()
    try:
        rule_id, marker = str(uuid.uuid4()), f"amoskys-sink-e2e-{uuid.uuid4().hex[:8]}"
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "sleep.yml").write_text(RULE.format(id=rule_id, marker=marker))
        (tmp_path / marker).mkdir()
        secret = tmp_path / "webhook.secret"
        secret.write_bytes(SECRET)
        ecs = tmp_path / "ecs" / "alerts.json"
        config = tmp_path / "amoskys.toml"
        config.write_text(
            f"""
[detections]
sigma_paths = ["{tmp_path / "rules"}"]
[[sinks.webhook]]
name = "hook"
url = "{receiver.url}"
secret_file = "{secret}"
rules = ["{rule_id}"]
[[sinks.syslog]]
name = "siem"
address = "127.0.0.1:{rsyslog.tls_port}"
transport = "tls"
ca_file = "{rsyslog.ca_file}"
rules = ["{rule_id}"]
[[sinks.ecs_file]]
name = "ecs"
path = "{ecs}"
rules = ["{rule_id}"]
[collectors.process]
mode = "netlink"
snapshot_interval_seconds = 3600.0
[collectors.host]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
"""
        )
        app = appliance_factory("--config", str(config))
        app.wait_ready(timeout=30)
        subprocess.run(["sleep", "0.05"], cwd=tmp_path / marker, check=True, timeout=10)

        def mine() -> list[dict[str, object]]:
            return [a for a in delivered(receiver) if a["alert"]["rule_id"] == rule_id]  # type: ignore[index]

        wait_for(mine, timeout=20, what="the alert at the webhook")
        wait_for(lambda: ecs.exists() and ecs.read_bytes().count(b"\n"), timeout=10, what="the ECS line")
        wait_for(lambda: rsyslog.lines("tls"), timeout=10, what="the syslog message")
        [posted] = mine()
        for request in receiver.requests:
            receiver_checks(request)
        [doc] = [json.loads(line) for line in ecs.read_bytes().splitlines()]
        [line] = rsyslog.lines("tls")
        event_id = posted["event_id"]
        assert doc["event"]["id"] == line["sd"]["amoskys@32473"]["event_id"] == event_id
        assert doc["rule"]["id"] == rule_id and doc["log"]["level"] == "high"
        assert line["severity"] == "err" and line["sd"]["amoskys@32473"]["tags"] == "attack.execution"
        for sink in ("hook", "siem", "ecs"):
            wait_for(
                lambda sink=sink: (
                    metric(app, f'amoskys_sink_alerts_total{{outcome="delivered",sink="{sink}"}}') >= 1
                ),
                timeout=5,
                what=f"{sink}'s delivered alerts on /metrics",
            )
            # the lag gauge follows the sink's cursor, saved after the delivery is counted
            wait_for(
                lambda sink=sink: metric(app, f'amoskys_forwarder_lag_events{{sink="{sink}"}}') == 0,
                timeout=10,
                what=f"{sink}'s lag back to 0 on /metrics",
            )
        app.signal(signal.SIGTERM)
        assert app.wait_exit(timeout=30) == 0
    finally:
        receiver.stop()
        rsyslog.stop()
