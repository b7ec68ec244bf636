"""The field mapping: process execs and flows as Sigma field dicts."""

from __future__ import annotations

import subprocess
import sys

from amoskys.detections.sigma.fields import (
    PROVIDED,
    network_connection_fields,
    process_creation_fields,
    protocol_name,
)


def test_an_exec_maps_to_sigma_process_creation_fields() -> None:
    fields = process_creation_fields(
        exe="/usr/bin/curl",
        argv=["curl", "-o", "/tmp/x", "http://e"],
        user="alice",
        pid=10,
        ppid=9,
        cwd="/home/alice",
        parent_exe="/usr/bin/bash",
        parent_argv=["bash", "-i"],
    )
    assert fields == {
        "Image": "/usr/bin/curl",
        "ImageDeleted": False,
        "CommandLine": "curl -o /tmp/x http://e",
        "User": "alice",
        "ProcessId": 10,
        "ParentProcessId": 9,
        "CurrentDirectory": "/home/alice",
        "ParentImage": "/usr/bin/bash",
        "ParentCommandLine": "bash -i",
    }
    assert set(fields) == PROVIDED["process_creation"]


def test_a_deleted_executable_is_stripped_of_the_suffix_and_flagged() -> None:
    fields = process_creation_fields(
        exe="/tmp/x (deleted)", argv=["x"], user="", pid=1, ppid=0, parent_exe="/tmp/p (deleted)"
    )
    assert fields["Image"] == "/tmp/x" and fields["ImageDeleted"] is True
    assert fields["ParentImage"] == "/tmp/p"


def test_fields_that_could_not_be_read_are_left_out() -> None:
    fields = process_creation_fields(exe="", argv=[], user="", pid=5, ppid=1)
    assert fields == {"ProcessId": 5, "ParentProcessId": 1}


def test_command_line_is_argv_joined_by_single_spaces_as_given() -> None:
    fields = process_creation_fields(
        exe="/bin/sh", argv=["sh", "-c", "a  b", "token=***"], user="u", pid=1, ppid=0
    )
    assert fields["CommandLine"] == "sh -c a  b token=***"


def test_a_flow_maps_to_sigma_network_connection_fields() -> None:
    fields = network_connection_fields(
        src_addr="10.0.0.2", src_port=40000, dst_addr="1.1.1.1", dst_port=53, protocol=17
    )
    assert fields == {
        "SourceIp": "10.0.0.2",
        "SourcePort": 40000,
        "DestinationIp": "1.1.1.1",
        "DestinationPort": 53,
        "Protocol": "udp",
        "Initiated": True,
    }
    assert set(fields) == PROVIDED["network_connection"]


def test_protocol_numbers_are_named_as_sigma_rules_spell_them() -> None:
    assert [protocol_name(n) for n in (6, 17, 1, 58, 47)] == ["tcp", "udp", "icmp", "ipv6-icmp", "47"]


def test_the_package_the_mapping_and_the_cli_do_not_import_pysigma() -> None:
    code = (
        "import sys, amoskys.detections, amoskys.detections.sigma.fields, amoskys.detections.sigma.model;"
        "from amoskys.cli import build_parser; build_parser();"
        "print(sorted(m for m in sys.modules if m == 'sigma' or m.startswith('sigma.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
