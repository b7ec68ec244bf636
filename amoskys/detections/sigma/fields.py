"""Our events as Sigma field dicts: which Sigma fields each log source category provides, and the pure
functions that build them from a process exec or a flow.

A field we cannot fill is left out of the dict (never an empty string), so Sigma's `null` matches it
and any other condition on it is false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

PROCESS_CREATION: Final = "process_creation"
NETWORK_CONNECTION: Final = "network_connection"

#: The suffix the kernel appends to /proc/PID/exe when the executable was deleted or replaced.
DELETED_SUFFIX: Final = " (deleted)"

#: The Sigma fields each category provides (Sigma's names, as in SigmaHQ's Linux rules).
PROVIDED: Final[Mapping[str, frozenset[str]]] = {
    PROCESS_CREATION: frozenset(
        {
            "Image",
            "ImageDeleted",
            "CommandLine",
            "ParentImage",
            "ParentCommandLine",
            "User",
            "ProcessId",
            "ParentProcessId",
            "CurrentDirectory",
        }
    ),
    NETWORK_CONNECTION: frozenset(
        {"SourceIp", "SourcePort", "DestinationIp", "DestinationPort", "Protocol", "Initiated"}
    ),
}

#: Why a field Sigma rules use is not provided, where there is more to say than "not provided".
NOT_PROVIDED_REASONS: Final[Mapping[str, Mapping[str, str]]] = {
    NETWORK_CONNECTION: {
        "Image": "flows carry no Image",
        "CommandLine": "flows carry no CommandLine",
        "ParentImage": "flows carry no ParentImage",
        "User": "flows carry no User",
        "ProcessId": "flows carry no ProcessId",
        "DestinationHostname": "flows carry no host names",
        "SourceHostname": "flows carry no host names",
    },
    PROCESS_CREATION: {
        "OriginalFileName": "Linux executables carry no OriginalFileName",
        "Hashes": "exec events carry no Hashes field",
        "LogonId": "exec events carry no LogonId",
        "ParentUser": "exec events carry no ParentUser",
    },
}

#: IANA protocol numbers as Sigma's network_connection rules spell them.
_PROTOCOL_NAMES: Final[Mapping[int, str]] = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}


def strip_deleted(exe: str) -> tuple[str, bool]:
    """The executable path without the kernel's " (deleted)" suffix, and whether it was there."""
    if exe.endswith(DELETED_SUFFIX):
        return exe[: -len(DELETED_SUFFIX)], True
    return exe, False


def command_line(argv: Sequence[str]) -> str:
    """argv joined by single spaces (as Sigma's CommandLine; argv is already redacted)."""
    return " ".join(argv)


def process_creation_fields(
    *,
    exe: str,
    argv: Sequence[str],
    user: str,
    pid: int,
    ppid: int,
    cwd: str = "",
    parent_exe: str | None = None,
    parent_argv: Sequence[str] | None = None,
) -> dict[str, object]:
    """Sigma `process_creation` fields of one exec. Empty values are left out (a missing field)."""
    fields: dict[str, object] = {"ProcessId": pid, "ParentProcessId": ppid}
    if exe:
        image, deleted = strip_deleted(exe)
        fields["Image"] = image
        fields["ImageDeleted"] = deleted
    if argv:
        fields["CommandLine"] = command_line(argv)
    if user:
        fields["User"] = user
    if cwd:
        fields["CurrentDirectory"] = cwd
    if parent_exe:
        fields["ParentImage"] = strip_deleted(parent_exe)[0]
    if parent_argv:
        fields["ParentCommandLine"] = command_line(parent_argv)
    return fields


def protocol_name(protocol: int) -> str:
    """The name Sigma rules use for an IANA protocol number ("tcp", "udp", "icmp", ...); other numbers
    as decimal strings."""
    return _PROTOCOL_NAMES.get(protocol, str(protocol))


def network_connection_fields(
    *,
    src_addr: str,
    src_port: int,
    dst_addr: str,
    dst_port: int,
    protocol: int,
    initiated: bool = True,
) -> dict[str, object]:
    """Sigma `network_connection` fields of one flow. A FlowRecord's source is the side that sent the
    first packet, so from its point of view the connection is initiated (`Initiated` "true")."""
    fields: dict[str, object] = {
        "SourcePort": src_port,
        "DestinationPort": dst_port,
        "Protocol": protocol_name(protocol),
        "Initiated": initiated,
    }
    if src_addr:
        fields["SourceIp"] = src_addr
    if dst_addr:
        fields["DestinationIp"] = dst_addr
    return fields
