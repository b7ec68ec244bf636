"""packaging/prometheus: promtool runs the rules' unit tests (every rule, firing and quiet), the rules
name only metrics AMOSKYS exports, and the scrape config is one Prometheus accepts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from support import ROOT, require_tool

PROMETHEUS = ROOT / "packaging" / "prometheus"
RULES = PROMETHEUS / "amoskys.rules.yml"
RULE_TESTS = PROMETHEUS / "amoskys.rules.test.yml"
#: what a histogram's series add to its name
_SUFFIXES = ("_bucket", "_count", "_sum")


def alerts() -> dict[str, str]:
    rules = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}


def exported_metric_names() -> set[str]:
    """Every metric name the package declares (string literals "amoskys_..." in its modules)."""
    names: set[str] = set()
    for path in (ROOT / "amoskys").rglob("*.py"):
        if "proto" in path.parts:
            continue
        names.update(re.findall(r"\"(amoskys_[a-z0-9_]+)\"", path.read_text()))
    return names


@pytest.mark.needs_tool
def test_promtool_passes_the_rules_unit_tests() -> None:
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_rule_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(alerts()) - firing == set(), "rules no test sees firing"
    assert set(alerts()) - quiet == set(), "rules no test sees quiet"


def test_rules_name_only_metrics_amoskys_exports() -> None:
    exported = exported_metric_names()
    for alert, expr in alerts().items():
        for name in re.findall(r"\bamoskys_[a-z0-9_]+", expr):
            base = next((name.removesuffix(s) for s in _SUFFIXES if name.endswith(s)), name)
            assert name in exported or base in exported, f"{alert}: {name} is no metric of amoskys"


@pytest.mark.needs_tool
def test_the_scrape_config_is_valid(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "prometheus")
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    token = tmp_path / "amoskys-metrics-token"
    token.write_text("secret\n")
    for job in config["scrape_configs"]:
        assert job["authorization"]["type"] == "Bearer"  # what [web] metrics_token_file asks for
        job["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout
