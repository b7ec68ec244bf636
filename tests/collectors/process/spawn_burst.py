"""Start N short-lived children at once from this (separate) process; print them as JSON.

Usage: python spawn_burst.py N → [[pid, argv, expected exit code], ...] on stdout. A separate process,
so that the test's own threads do not compete with the collector's for the GIL (a real host's
processes never do). argv[0] is the real path of the program, as /proc/<pid>/exe shows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

TRUE = os.path.realpath(shutil.which("true") or "/bin/true")
SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
SH = os.path.realpath("/bin/sh")


def main(count: int) -> None:
    started = []
    for i in range(count):
        if i % 10 == 0:
            argv, code = [SH, "-c", "exit 3"], 3
        elif i % 10 == 1:
            argv, code = [SLEEP, "0.03"], 0  # lives ≥ 20 ms: must be fully enriched
        else:
            argv, code = [TRUE], 0
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        started.append((child, argv, code))
    for child, _, _ in started:
        child.wait()
    json.dump([[child.pid, argv, code] for child, argv, code in started], sys.stdout)


if __name__ == "__main__":
    main(int(sys.argv[1]))
