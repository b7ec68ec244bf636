"""Real SNMP agents for the tests and the benchmark: snmpsim (recorded and generated devices) and
net-snmp's snmpd (generated config), each on a free UDP port of 127.0.0.1, plus net-snmp's tools."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import snmpsim

SNMPSIM_DATA = Path(snmpsim.__file__).parent / "data"
RECORDED = SNMPSIM_DATA / "recorded"


def free_udp_port() -> int:
    """A UDP port free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def device_snmprec(
    name: str,
    interfaces: int,
    *,
    hc: bool = True,
    octets_per_second: int = 1000,
    in32_initial: int = 0,
    in32_wrap: bool = False,
) -> str:
    """A switch as a .snmprec text: the system group, ifTable and (with `hc`) ifXTable.

    sysUpTime and the octet counters are snmpsim ``numeric`` variations, linear in time since the
    simulator started: interface i receives ``octets_per_second × i`` octets/s and sends half that, so
    rates are known exactly. `in32_initial` and `in32_wrap` set where ifInOctets starts and whether it
    wraps at 2^32 (snmpsim wraps modulo 2^32 − 1: one octet short, far below any tolerance).
    """
    lines = [
        f"1.3.6.1.2.1.1.1.0|4|Simulated switch {name}",
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.8072.3.2.10",
        "1.3.6.1.2.1.1.3.0|67:numeric|rate=100,initial=1000",
        "1.3.6.1.2.1.1.4.0|4|noc@example.net",
        f"1.3.6.1.2.1.1.5.0|4|{name}",
        "1.3.6.1.2.1.1.6.0|4|rack 7",
        f"1.3.6.1.2.1.2.1.0|2|{interfaces}",
    ]
    rows = range(1, interfaces + 1)

    def column(prefix: str, col: int, value) -> None:  # type: ignore[no-untyped-def]
        lines.extend(f"{prefix}.{col}.{i}|{value(i)}" for i in rows)

    t = "1.3.6.1.2.1.2.2.1"
    wrap = ",wrap=1" if in32_wrap else ""
    column(t, 1, lambda i: f"2|{i}")
    column(t, 2, lambda i: f"4|GigabitEthernet0/{i}")
    column(t, 3, lambda i: "2|6")
    column(t, 4, lambda i: "2|1500")
    column(t, 5, lambda i: "66|1000000000")
    column(t, 6, lambda i: f"4x|02000000{i:04x}")
    column(t, 7, lambda i: "2|1")
    column(t, 8, lambda i: f"2|{1 if i % 5 else 2}")
    column(t, 9, lambda i: "67|0")
    column(t, 10, lambda i: f"65:numeric|rate={octets_per_second * i},initial={in32_initial}{wrap}")
    column(t, 11, lambda i: f"65:numeric|rate={i}")
    for col in (12, 13, 14, 15):
        column(t, col, lambda i: "65|0")
    column(t, 16, lambda i: f"65:numeric|rate={octets_per_second * i // 2}")
    column(t, 17, lambda i: f"65:numeric|rate={i}")
    for col in (18, 19, 20):
        column(t, col, lambda i: "65|0")
    column(t, 21, lambda i: "66|0")
    column(t, 22, lambda i: "6|0.0")
    if hc:
        x = "1.3.6.1.2.1.31.1.1.1"
        column(x, 1, lambda i: f"4|Gi0/{i}")
        for col in (2, 3, 4, 5):
            column(x, col, lambda i: "65|0")
        column(x, 6, lambda i: f"70:numeric|rate={octets_per_second * i}")
        column(x, 7, lambda i: f"70:numeric|rate={i}")
        column(x, 8, lambda i: "70|0")
        column(x, 9, lambda i: "70|0")
        column(x, 10, lambda i: f"70:numeric|rate={octets_per_second * i // 2}")
        column(x, 11, lambda i: f"70:numeric|rate={i}")
        column(x, 12, lambda i: "70|0")
        column(x, 13, lambda i: "70|0")
        column(x, 14, lambda i: "2|1")
        column(x, 15, lambda i: "66|1000")
        column(x, 16, lambda i: "2|2")
        column(x, 17, lambda i: "2|1")
        column(x, 18, lambda i: f"4|port {i}")
        column(x, 19, lambda i: "67|0")
    return "\n".join(lines) + "\n"


def _wait_answering(
    port: int, community: str, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"agent on port {port} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        r = subprocess.run(
            [
                "snmpget",
                "-v2c",
                "-c",
                community,
                "-t",
                "0.3",
                "-r",
                "0",
                f"127.0.0.1:{port}",
                "1.3.6.1.2.1.1.3.0",
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0 and "Timeticks" in r.stdout:
            return
    raise RuntimeError(f"agent on port {port} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@dataclass
class SnmpSim:
    """An snmpsim-command-responder serving every .snmprec of `data_dir` (community = file name)."""

    data_dir: Path
    ports: list[int]
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir.parent / f"snmpsim-{self.ports[0]}.log"

    @property
    def port(self) -> int:
        return self.ports[0]

    def start(self, check_community: str, timeout: float = 30.0) -> SnmpSim:
        cache = self.data_dir.parent / "snmpsim-cache"
        cache.mkdir(exist_ok=True)
        cmd = [
            str(Path(sys.executable).parent / "snmpsim-command-responder"),
            f"--data-dir={self.data_dir}",
            f"--cache-dir={cache}",
            "--logging-method=null",
            *(f"--agent-udpv4-endpoint=127.0.0.1:{p}" for p in self.ports),
        ]
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")  # CI runs as root; snmpsim refuses that otherwise
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _wait_answering(self.port, check_community, self.proc, self.log, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


@dataclass
class SnmpDaemon:
    """net-snmp's snmpd in the foreground with a generated config, on 127.0.0.1:`port`."""

    workdir: Path
    port: int
    community: str = "t3st-c0mmunity-x9"
    sys_name: str = "amoskys-test-agent"
    users: list[tuple[str, str, str, str, str]] = field(
        default_factory=list
    )  # (user, auth, akey, priv, pkey)
    proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        lines = [
            f"rocommunity {self.community} 127.0.0.1",
            f"sysName {self.sys_name}",
            "sysLocation lab bench 3",
            "sysContact ops@example.org",
            "sysDescr AMOSKYS test agent (net-snmp)",
            "sysServices 72",
        ]
        for user, auth, akey, priv, pkey in self.users:
            lines.append(f'createUser {user} {auth} "{akey}" {priv} "{pkey}"')
            lines.append(f"rouser {user} priv")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> SnmpDaemon:
        snmpd = shutil.which("snmpd") or "/usr/sbin/snmpd"
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "snmpd.conf"
        conf.write_text(self.config_text())
        conf.chmod(0o600)
        persist = self.workdir / "persist"
        persist.mkdir(exist_ok=True)
        log = self.workdir / "snmpd.log"
        cmd = [
            snmpd,
            "-f",  # foreground
            "-Lf",
            str(log),
            "-C",  # only our config file
            "-c",
            str(conf),
            f"--persistentDir={persist}",
            "-p",
            str(self.workdir / "snmpd.pid"),
            "-M",
            str(self.workdir),  # no MIB files: nothing to parse, nothing to warn about
            f"udp:127.0.0.1:{self.port}",
        ]
        env = dict(os.environ, MIBS="")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _wait_answering(self.port, self.community, self.proc, log, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


def net_snmp(tool: str, *args: str, port: int, community: str) -> str:
    """Run snmpget/snmpbulkwalk (-On: numeric OIDs, -Oe: numeric enums, -Ot: raw timeticks)."""
    r = subprocess.run(
        [
            tool,
            "-v2c",
            "-c",
            community,
            "-On",
            "-Oe",
            "-Ot",
            "-t",
            "2",
            "-r",
            "1",
            f"127.0.0.1:{port}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, MIBS=""),
    )
    if r.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def parse_net_snmp(output: str) -> dict[str, str]:
    """``.1.3.6.1.2.1.1.5.0 = STRING: "x"`` lines → {"1.3.6.1.2.1.1.5.0": "x"} (quotes dropped)."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        if " = " not in line:
            continue
        name, _, rest = line.partition(" = ")
        value = rest.split(": ", 1)[1] if ": " in rest else rest
        values[name.strip().lstrip(".")] = value.strip().strip('"')
    return values
