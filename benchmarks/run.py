"""Run every benchmarks/bench_*.py and write benchmarks/RESULTS.md (`make bench`).

Each bench script prints a Markdown section on stdout; this file adds the machine it ran on.
Run one: `.venv/bin/python benchmarks/run.py startup` (names without the bench_ prefix). bench_loop.py
(issue 16's targets) runs 5 one-minute rows by default; `AMOSKYS_BENCH_LOOP_MINUTES=1` for a quick run.
Each section ends with the 1-minute load average before its script started.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    sections = []
    failed = []
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, cwd=HERE.parent
        )
        took = time.monotonic() - t0
        if result.returncode != 0:
            failed.append(script.name)
            sections.append(
                f"## {script.stem}\n\nFAILED (exit {result.returncode}):\n\n```\n{result.stderr[-3000:]}\n```\n"
            )
        else:
            sections.append(
                result.stdout.strip()
                + f"\n\n_{script.name} took {took:.0f} s (1-minute load average before: {load:.2f})._\n"
            )
        print(f"  {script.name}: {'FAILED' if result.returncode else 'ok'} in {took:.0f} s", file=sys.stderr)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` on {now}.\n\nMachine: {machine()}.\n\n"
        "Figures vary run to run by roughly ±10% on this shared machine; compare within one run.\n"
    )
    out = HERE / "RESULTS.md"
    if argv and out.exists():  # a partial run replaces only its own sections
        old = out.read_text()
        kept = [  # a section names its script when it took a time, or in its heading when it failed
            s
            for s in old.split("\n## ")[1:]
            if not any(f"bench_{a}.py took" in s or s.startswith(f"bench_{a}\n") for a in argv)
        ]
        sections = [("## " + s).strip() + "\n" for s in kept] + sections
    out.write_text(header + "\n" + "\n".join(sections))
    print(f"wrote {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
