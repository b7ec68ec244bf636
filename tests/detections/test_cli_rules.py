"""`amoskys rules check` as an operator runs it: a real process, its exit code, its text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RULES = Path(__file__).parent / "rules"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amoskys", "rules", "check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_all_rules_loading_exits_0_and_lists_each_rule() -> None:
    done = run(RULES / "loaded")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "26 loaded, 0 unsupported, 0 invalid"
    assert sum(line.startswith("loaded ") for line in lines) == 26
    assert any(
        "257ea146-a3ca-48d1-92e8-f6b75ddf6b29  Immutable Attribute Removed With Chattr" in line
        for line in lines
    )


def test_an_unsupported_rule_exits_1_and_says_why() -> None:
    done = run(RULES / "loaded", RULES / "unsupported" / "network_image.yml")
    assert done.returncode == 1, done.stderr
    assert "unsupported  799f88cf-14be-40cf-b162-6b442baa5f47  Shell Connecting Out" in done.stdout
    assert "field 'Image': flows carry no Image" in done.stdout


def test_an_invalid_file_exits_2_even_beside_unsupported_rules() -> None:
    done = run(RULES / "unsupported", RULES / "invalid" / "not_yaml.yml")
    assert done.returncode == 2, done.stderr
    assert "invalid      " in done.stdout and "not_yaml.yml: not valid YAML" in done.stdout


def test_a_missing_path_exits_2(tmp_path: Path) -> None:
    done = run(tmp_path / "missing")
    assert done.returncode == 2
    assert "no such file or directory" in done.stdout


def test_a_folder_without_rules_exits_1(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 1
    assert done.stdout.strip() == "0 loaded, 0 unsupported, 0 invalid (no rule files found)"


def test_json_report_lists_every_rule_with_its_outcome() -> None:
    done = run(
        RULES / "loaded" / "proc_creation_lnx_chattr_immutable_removal.yml", RULES / "unsupported", "--json"
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"] == {"loaded": 2, "unsupported": 12, "invalid": 0}
    assert report["exit_code"] == 1
    chattr = next(r for r in report["loaded"] if r["id"] == "257ea146-a3ca-48d1-92e8-f6b75ddf6b29")
    assert chattr == {
        "id": "257ea146-a3ca-48d1-92e8-f6b75ddf6b29",
        "title": "Immutable Attribute Removed With Chattr",
        "level": "medium",
        "category": "process_creation",
        "tags": ["attack.defense-evasion", "attack.t1222.002"],
        "fields": ["CommandLine", "Image"],
        "path": str(RULES / "loaded" / "proc_creation_lnx_chattr_immutable_removal.yml"),
    }
    reasons = {u["id"]: u["reason"] for u in report["unsupported"]}
    assert reasons["053967f7-d583-4418-b9a1-6845811cf6e0"] == "unknown modifier 'contains_any'"
    assert report["invalid"] == []


def test_json_report_of_invalid_files_exits_2() -> None:
    done = run(RULES / "invalid", "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert sorted(Path(i["path"]).name for i in report["invalid"]) == [
        "bad_id.yml",
        "not_a_mapping.yml",
        "not_yaml.yml",
        "undefined_detection.yml",
    ]


def test_without_a_path_it_checks_the_configured_sigma_paths(tmp_path: Path) -> None:
    config = tmp_path / "amoskys.toml"
    config.write_text(f'[detections]\nsigma_paths = ["{RULES / "unsupported" / "network_image.yml"}"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "amoskys", "rules", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-1] == "0 loaded, 1 unsupported, 0 invalid"


def test_without_a_path_or_configured_paths_it_says_so_and_exits_2() -> None:
    done = run()
    assert done.returncode == 2
    assert "no PATH given and `[detections] sigma_paths` is empty" in done.stderr
