"""A collector is one folder: the example in amoskys/collectors/README.md, written to a folder on
PYTHONPATH and nowhere else, is registered, validated, sampled, listed, run and restarted."""

from __future__ import annotations

import json
import re
import signal
import tomllib
from pathlib import Path

import pytest

import amoskys.collectors as collectors_package

from support import ROOT, amoskys, http_get, wait_for

pytestmark = pytest.mark.e2e

README = ROOT / "amoskys" / "collectors" / "README.md"
FILE_BLOCK = re.compile(r"^#### `loadavg/([\w.]+)`\n```\w*\n(.*?)^```$", re.S | re.M)


def example_folder(site: Path) -> Path:
    """The README's "How to add a collector" files, written under `site`/amoskys/collectors/loadavg."""
    section = README.read_text().split("\n## How to add a collector\n", 1)[1]
    files = dict(FILE_BLOCK.findall(section))
    assert set(files) == {
        "__init__.py",
        "config.py",
        "metrics.py",
        "collector.py",
        "sample.toml",
        "README.md",
    }
    folder = site / "amoskys" / "collectors" / "loadavg"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _collector(data_dir: Path, name: str, env: dict[str, str]) -> dict | None:
    status = json.loads(amoskys("status", "--json", "--data-dir", str(data_dir), env=env).stdout)
    return next((c for c in status["collectors"] if c["name"] == name), None)


def test_the_readme_example_folder_is_a_whole_collector(appliance_factory, tmp_path: Path) -> None:
    assert not (Path(collectors_package.__file__).parent / "loadavg").exists()
    site = tmp_path / "site"
    example_folder(site)
    env = {"PYTHONPATH": str(site)}
    good = tmp_path / "good.toml"
    good.write_text("[collectors.loadavg]\ninterval_seconds = 1\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[collectors.loadavg]\ninterval_seconds = 0\n")

    # without the folder the section is unknown; with it, check-config validates it with the key path
    unknown = amoskys("check-config", str(good), check=False)
    assert unknown.returncode == 2
    assert "collectors.loadavg: unknown collector (known: discovery, flow," in unknown.stderr
    assert amoskys("check-config", str(good), env=env).stdout.strip() == f"{good}: ok"
    refused = amoskys("check-config", str(bad), env=env, check=False)
    assert (
        refused.returncode == 2
        and "collectors.loadavg.interval_seconds: Expected `float` >= 1" in refused.stderr
    )

    # the assembled sample includes its commented section, with the struct's defaults
    sample = amoskys("config", "sample", env=env).stdout
    assert "# The system's load averages (HostMetrics events)" in sample
    assert tomllib.loads(sample)["collectors"]["loadavg"] == {"enabled": True, "interval_seconds": 30.0}

    # the appliance lists it, runs it (events in the store, series on /metrics) and restarts it
    app = appliance_factory("--config", str(good), env=env)
    app.wait_ready()
    data = app.data_dir
    wait_for(
        lambda: (_collector(data, "loadavg", env) or {}).get("state") == "running", what="loadavg running"
    )

    def load_events() -> list[dict]:
        out = amoskys("events", "export", "--kind", "host", "--data-dir", str(data)).stdout
        return [e for e in map(json.loads, out.splitlines()) if "load1" in e["body"]]

    events = wait_for(
        lambda: (lambda e: e if len(e) >= 2 else None)(load_events()), timeout=15, what="2 samples"
    )
    assert all(e["source"] == app.info["name"] for e in events)
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200 and re.search(rb"^amoskys_loadavg_load1 \d", body, re.M), body[:300]
    assert b'amoskys_collector_events_total{collector="loadavg"}' in body

    amoskys("collectors", "restart", "loadavg", "--data-dir", str(data), env=env)
    after = wait_for(
        lambda: (lambda c: c if c and c["state"] == "running" and c["restarts"] >= 1 else None)(
            _collector(data, "loadavg", env)
        ),
        what="loadavg restarted",
    )
    assert after["errors"] == 0
    app.signal(signal.SIGTERM)
    assert app.wait_exit(10) == 0
