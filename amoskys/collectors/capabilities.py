"""Linux capabilities of this process, read from /proc/self/status (what self_check() asks)."""

from __future__ import annotations

from pathlib import Path

#: Capability numbers from linux/capability.h.
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


def parse_cap_eff(status_text: str) -> frozenset[str]:
    """The names of the effective capabilities in the text of a /proc/<pid>/status file."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split(":", 1)[1].strip(), 16)
            return frozenset(name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1)
    return frozenset()


def effective_capabilities(status_path: Path = Path("/proc/self/status")) -> frozenset[str]:
    """This process's effective capabilities; empty where /proc is missing (not Linux)."""
    try:
        return parse_cap_eff(status_path.read_text())
    except OSError:
        return frozenset()


def has_capability(name: str) -> bool:
    """True when this process holds capability `name` (``"CAP_NET_RAW"``) in its effective set."""
    if name not in CAPABILITIES:
        raise ValueError(f"unknown capability {name!r} (expected a name like 'CAP_NET_RAW')")
    return name in effective_capabilities()
