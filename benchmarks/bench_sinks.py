"""Alert sinks end to end: exec → webhook receiver latency through a running `amoskys run` (root: the
process collector reads the netlink proc connector).

SAMPLES generated Sigma rules each match `sleep` run in its own working directory; the benchmark starts
one such `sleep` at a time (a real process) and times from just before its start until an HTTP server on
loopback (in this process, its own thread) has received the POST carrying that rule's alert and checked
its HMAC signature: the exec event, the group commit, evaluation, the Alert event's commit, the webhook
sink woken by that commit, its batch and its request.
Knobs: AMOSKYS_BENCH_SINKS_SAMPLES (default 100).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench_detect import RULE, wait_ready

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = int(os.environ.get("AMOSKYS_BENCH_SINKS_SAMPLES", "100"))
GOAL_P99_S = 1.0
SECRET = b"benchmark-shared-secret"

CONFIG = """
[detections]
sigma_paths = ["{rules}"]
[[sinks.webhook]]
name = "bench"
url = "http://127.0.0.1:{port}/alerts"
secret_file = "{secret}"
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


class Receiver:
    """Records when each rule's alert arrived; counts requests whose signature does not check."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.bad_signatures = 0
        self.requests = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.monotonic()
                fields = dict(p.split("=", 1) for p in self.headers.get("X-Amoskys-Signature", "").split(","))
                mac = hmac.new(SECRET, f"{fields.get('t', '')}.".encode() + body, hashlib.sha256).hexdigest()
                good = (
                    hmac.compare_digest(mac, fields.get("v1", ""))
                    and abs(time.time() - int(fields["t"])) < 300
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.changed:
                    receiver.requests += 1
                    receiver.bad_signatures += not good
                    for alert in json.loads(body)["alerts"]:
                        receiver.arrived.setdefault(alert["alert"].get("rule_id", ""), now)
                    receiver.changed.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, rule_id: str, timeout: float) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: rule_id in self.arrived, timeout)
            return self.arrived.get(rule_id)


def main() -> int:
    if os.geteuid() != 0:
        print("## sinks\n\nSkipped: needs root (the netlink proc connector).")
        return 0
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="amoskys-bench-sinks-") as tmp:
        base = Path(tmp)
        rules, data, work = base / "rules", base / "data", base / "work"
        rules.mkdir()
        ids = []
        for n in range(SAMPLES):
            ids.append(str(uuid.uuid4()))
            (rules / f"bench_{n}.yml").write_text(RULE.format(n=n, id=ids[-1]))
            (work / f"amoskys-bench-{n}").mkdir(parents=True)
        secret = base / "webhook.secret"
        secret.write_bytes(SECRET)
        secret.chmod(0o600)
        cfg = base / "amoskys.toml"
        cfg.write_text(CONFIG.format(rules=rules, port=receiver.port, secret=secret))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")} | {
            "AMOSKYS_LOG_LEVEL": "warning"
        }
        cmd = [sys.executable, "-m", "amoskys", "run", "--config", str(cfg), "--data-dir", str(data)]
        cmd += ["--web-listen", "127.0.0.1:0", "--bus-listen", "127.0.0.1:0"]
        log = open(base / "amoskys.log", "wb")  # closed below, after the child ends
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        latencies = []
        try:
            wait_ready(data, proc)
            for n, rule_id in enumerate(ids):
                t0 = time.monotonic()
                child = subprocess.Popen(["sleep", "0.03"], cwd=work / f"amoskys-bench-{n}")
                arrived = receiver.wait(rule_id, timeout=10)
                if arrived is None:
                    raise SystemExit(f"no webhook request for sample {n} within 10 s")
                latencies.append(arrived - t0)
                child.wait()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()
            receiver.server.shutdown()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    verdict = "meets" if p99 < GOAL_P99_S else "misses"
    print(
        f"## sinks\n\nexec → webhook receiver through `amoskys run` (netlink process collector, {SAMPLES} Sigma "
        f"rules, one real `sleep` at a time, each alert POSTed signed to an HTTP server on loopback):\n\n"
        f"| samples | p50 | p99 | max | requests | bad signatures |\n|---|---|---|---|---|---|\n"
        f"| {len(latencies)} | {p50 * 1000:.1f} ms | {p99 * 1000:.1f} ms | {latencies[-1] * 1000:.1f} ms "
        f"| {receiver.requests} | {receiver.bad_signatures} |\n\n"
        f"p99 {verdict} the goal (< {GOAL_P99_S:g} s)."
    )
    return 0 if receiver.bad_signatures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
