"""Exec a command under the seccomp filters systemd builds for a unit's SystemCallFilter=,
SystemCallErrorNumber=, RestrictAddressFamilies= and SystemCallArchitectures=native: the packaging
tests' stand-in for systemd as PID 1.

    python3 seccomp_exec.py --filter @system-service --errno EPERM \
        --families AF_UNIX,AF_INET,AF_INET6,AF_NETLINK,AF_PACKET -- COMMAND ARG...

The system call sets are the installed systemd's own (`systemd-analyze syscall-filter`); a call outside
the set fails with --errno, a socket() of another address family with EAFNOSUPPORT, as under systemd;
a call of another architecture's ABI kills the process (libseccomp's default for a foreign
architecture, systemd's for SystemCallArchitectures=native). Runs with Debian's python3 and its
python3-seccomp (libseccomp's own binding), after `setpriv --no-new-privs`.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import subprocess
import sys

import seccomp  # type: ignore[import-not-found]  # Debian's python3-seccomp, not in the venv

#: socket() family numbers above every real one (AF_MAX is 46 on Linux 6.x) are refused as a range
AF_CEILING = 64


def syscall_sets() -> dict[str, list[str]]:
    """Every named set (`@system-service` ...) and its members, as this systemd defines them."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    sets: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = sets.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return sets


def expand(name: str, sets: dict[str, list[str]]) -> set[str]:
    """The system calls of a set, nested sets included."""
    found: set[str] = set()
    for member in sets[name]:
        found |= expand(member, sets) if member.startswith("@") else {member}
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--filter", required=True)
    parser.add_argument("--errno", required=True)
    parser.add_argument("--families", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    families = {int(getattr(socket, name)) for name in args.families.split(",")}
    by_family = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for family in range(AF_CEILING):
        if family not in families:
            by_family.add_rule(
                seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family)
            )
    by_family.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.GE, AF_CEILING))

    allowed = seccomp.SyscallFilter(defaction=seccomp.ERRNO(getattr(errno, args.errno)))
    unknown = []
    for name in sorted(expand(args.filter, syscall_sets())):
        try:
            allowed.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):  # not a system call of this architecture (systemd skips it too)
            unknown.append(name)
    by_family.load()
    allowed.load()  # last: loading needs seccomp(2), outside most sets
    if not command:
        sys.exit(f"seccomp_exec: no command (skipped as unknown here: {', '.join(unknown)})")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
