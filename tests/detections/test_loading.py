"""Loading rule files: what is unsupported and why, what is invalid, ids, and reload fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from amoskys.detections.sigma.engine import fingerprint, load_rules, rules_from_text

RULES = Path(__file__).parent / "rules"

UNSUPPORTED = {
    "aggregation_pipe.yml": "aggregations in the condition ('|') are not supported",
    "auditd_service.yml": "logsource service 'auditd' is not evaluated",
    "correlation_many_downloads.yml": "correlation rules are not supported",
    "file_event_category.yml": "category 'file_event' is not evaluated (evaluated: process_creation, network_connection)",
    "network_image.yml": "field 'Image': flows carry no Image",
    "network_keywords.yml": "keywords search CommandLine, which network_connection events do not carry",
    "placeholder_admin_users.yml": "placeholders are not supported",
    "sigma_filter.yml": "Sigma filters are not supported",
    "timestamp_modifier.yml": "timestamp modifiers are not supported (field 'ProcessId')",
    "unknown_field_target_filename.yml": "field 'TargetFilename' is not provided for process_creation",
    "unknown_modifier_contains_any.yml": "unknown modifier 'contains_any'",
    "windows_product.yml": "logsource product 'windows' is not evaluated",
}

INVALID = {
    "bad_id.yml": "not a valid Sigma rule: Sigma rule identifier must be an UUID",
    "not_a_mapping.yml": "not a Sigma rule (a YAML mapping is expected)",
    "not_yaml.yml": "not valid YAML: line 6, column 1: while scanning a quoted scalar found unexpected end",
    "undefined_detection.yml": "not a valid Sigma rule: Detection 'filter' not defined in detections",
}


def test_each_unsupported_rule_is_reported_with_its_reason() -> None:
    ruleset = load_rules([RULES / "unsupported"])
    reasons = {u.path.name: u.reason for u in ruleset.unsupported}
    assert set(reasons) == set(UNSUPPORTED)
    for name, reason in UNSUPPORTED.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    # the rule a correlation refers to is an ordinary rule and loads
    assert [r.title for r in ruleset.rules] == ["Downloads Base Rule"]
    assert ruleset.invalid == ()


def test_unsupported_rules_keep_their_id_and_title() -> None:
    ruleset = load_rules([RULES / "unsupported" / "network_image.yml"])
    (u,) = ruleset.unsupported
    assert (u.id, u.title) == ("799f88cf-14be-40cf-b162-6b442baa5f47", "Shell Connecting Out")


def test_each_invalid_file_is_reported_with_its_reason() -> None:
    ruleset = load_rules([RULES / "invalid"])
    reasons = {i.path.name: i.reason for i in ruleset.invalid}
    assert set(reasons) == set(INVALID)
    for name, reason in INVALID.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert ruleset.rules == () and ruleset.unsupported == ()


def test_a_missing_path_is_invalid_and_the_other_paths_still_load(tmp_path: Path) -> None:
    ruleset = load_rules(
        [tmp_path / "nope", RULES / "loaded" / "proc_creation_lnx_chattr_immutable_removal.yml"]
    )
    assert [(i.path, i.reason) for i in ruleset.invalid] == [(tmp_path / "nope", "no such file or directory")]
    assert [r.id for r in ruleset.rules] == ["257ea146-a3ca-48d1-92e8-f6b75ddf6b29"]


def test_a_directory_is_read_recursively_for_yml_and_yaml_only(tmp_path: Path) -> None:
    rule = (RULES / "loaded" / "proc_creation_lnx_chattr_immutable_removal.yml").read_text()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yaml").write_text(rule)
    (tmp_path / "b.yml").write_text(
        rule.replace("257ea146-a3ca-48d1-92e8-f6b75ddf6b29", "0b7b9b37-ffd0-4b0b-9d4c-0c4e1a3f9e10")
    )
    (tmp_path / "notes.txt").write_text("not a rule")
    ruleset = load_rules([tmp_path])
    assert sorted(r.path.name for r in ruleset.rules) == ["a.yaml", "b.yml"]


def test_a_rule_without_an_id_is_named_by_its_file_and_document() -> None:
    text = (RULES / "loaded" / "proc_creation_lnx_chattr_immutable_removal.yml").read_text()
    no_id = "\n".join(line for line in text.splitlines() if not line.startswith("id:"))
    ruleset = rules_from_text(f"{text}---\n{no_id}\n", Path("/rules/x.yml"))
    assert [r.id for r in ruleset.rules] == ["257ea146-a3ca-48d1-92e8-f6b75ddf6b29", "noid:/rules/x.yml#1"]


def test_an_uppercase_uuid_is_kept_verbatim() -> None:
    text = (RULES / "loaded" / "proc_creation_lnx_chattr_immutable_removal.yml").read_text()
    upper = text.replace("257ea146-a3ca-48d1-92e8-f6b75ddf6b29", "257EA146-A3CA-48D1-92E8-F6B75DDF6B29")
    assert [r.id for r in rules_from_text(upper).rules] == ["257EA146-A3CA-48D1-92E8-F6B75DDF6B29"]


def test_the_fingerprint_changes_when_a_rule_file_is_edited_added_or_removed(tmp_path: Path) -> None:
    rule = (RULES / "loaded" / "proc_creation_lnx_chattr_immutable_removal.yml").read_text()
    first = tmp_path / "a.yml"
    first.write_text(rule)
    ruleset = load_rules([tmp_path])
    assert fingerprint([tmp_path]) == ruleset.fingerprint
    first.write_text(rule.replace("level: medium", "level: high"))
    os.utime(first, ns=(1, 1))  # a different mtime even on a coarse clock
    edited = fingerprint([tmp_path])
    assert edited != ruleset.fingerprint
    (tmp_path / "b.yml").write_text(rule)
    added = fingerprint([tmp_path])
    assert added != edited
    (tmp_path / "b.yml").unlink()
    assert fingerprint([tmp_path]) == edited


@pytest.mark.parametrize(
    ("detection", "reason"),
    [
        (
            "    sel:\n        Hashes|contains: 'SHA256=AB'\n    condition: sel\n",
            "field 'Hashes': exec events carry no Hashes field",
        ),
        (
            "    sel:\n        Image|fieldref: TargetImage\n    condition: sel\n",
            "field 'TargetImage' is not provided",
        ),
    ],
)
def test_fields_we_cannot_provide_make_the_rule_unsupported(detection: str, reason: str) -> None:
    text = (
        f"title: t\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n{detection}"
    )
    ruleset = rules_from_text(text)
    assert ruleset.rules == ()
    assert ruleset.unsupported[0].reason.startswith(reason)
