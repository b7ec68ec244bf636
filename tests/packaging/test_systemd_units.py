"""packaging/systemd: both units pass `systemd-analyze verify` with ExecStart on the built file, and the
real appliance, started from that file, works under the appliance unit's sandbox.

CI has no systemd as PID 1, so the sandbox is rebuilt around the real process with the kernel
features systemd itself uses, and each property is then read back from /proc/<pid>:

Emulated, and checked on the running process:
  User=, Group=                  setpriv --reuid/--regid 65534 (nobody stands in for `amoskys`) --clear-groups
  AmbientCapabilities=           setpriv --inh-caps/--ambient-caps net_raw,net_admin,sys_ptrace
  CapabilityBoundingSet=         setpriv --bounding-set (the same three)
  NoNewPrivileges=yes            setpriv --no-new-privs
  ProtectSystem=strict           a private mount namespace (unshare -m) with every mount remounted
                                 read-only except /proc, /sys and /dev; the .pyz itself sits on it
  ProtectHome=read-only          /home, /root: read-only with the rest
  PrivateTmp=yes                 a fresh tmpfs on /tmp (/var/tmp is read-only here, not private)
  StateDirectory=, CacheDirectory= (+Mode 0700)
                                 0700 directories owned by the user, bind-mounted writable, passed as
                                 $STATE_DIRECTORY (the data dir amoskys picks) and $SHIV_ROOT
  Environment=SHIV_ROOT=         the libraries unpack into the cache directory
  UMask=0077                     umask 077
  LimitNOFILE=8192               prlimit --nofile
  ExecStart=                     the same command line, on the built file
  SystemCallFilter=@system-service, SystemCallErrorNumber=EPERM, RestrictAddressFamilies=,
  SystemCallArchitectures=native
                                 seccomp filters loaded by seccomp_exec.py (libseccomp's binding) from
                                 the unit's own values and the installed systemd's system call sets
                                 (`systemd-analyze syscall-filter`), as systemd loads them before exec

Verified only (systemd-analyze verify, and the property listing below; they take effect only under
systemd): Type=, Restart=, RestartSec=, TimeoutStopSec=, ConfigurationDirectory=, PrivateDevices=,
ProtectKernelTunables=, ProtectKernelModules=, ProtectKernelLogs=, ProtectControlGroups=, ProtectClock=,
ProtectHostname=, RestrictNamespaces=, RestrictRealtime=, RestrictSUIDSGID=, LockPersonality=, and the
agent unit's CPUQuota=, MemoryMax=, Nice= (device, kernel-interface and cgroup setup that needs
systemd itself). The sandbox runs the appliance unit; the agent unit shares every emulated property
but its paths.

What it asserts beyond "running": the process collector, through the proc connector (CAP_NET_ADMIN),
fills exe, argv, user, cwd and the exe's sha256 (read through /proc/<pid>/exe: CAP_SYS_PTRACE) for
every one of six processes of two other users — an enrichment ratio of 1.0 over them, and its
`complete` counter grows by at least six — while without CAP_SYS_PTRACE the same processes lose exe,
cwd and hash (`partial`); the flow collector captures (CAP_NET_RAW) a TCP connection made by the test
on the loopback interface and stores it as a flow record. The collector's own ratio gauge counts every
exec on the machine, so it is not asserted: short-lived processes of other work change it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyz_support import ROOT, SYSTEM_PATH, pids_running

from support import IN_CI, free_port, http_get, require_root, require_tool, wait_for

UNITS = ROOT / "packaging" / "systemd"
UNIT_NAMES = ("amoskys.service", "amoskys-agent.service")
NOBODY = 65534
CAPS = ("net_raw", "net_admin", "sys_ptrace")
SLEEP = "/usr/bin/sleep"
#: Debian's interpreter, for seccomp_exec.py (python3-seccomp is built for it, not for the venv's)
SYSTEM_PYTHON = "/usr/bin/python3"
PER_USER = 3
#: CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_SYS_PTRACE (19), as /proc/<pid>/status shows cap sets
CAP_MASK = (1 << 12) | (1 << 13) | (1 << 19)

EMULATED = {
    "User", "Group", "AmbientCapabilities", "CapabilityBoundingSet", "NoNewPrivileges", "ProtectSystem",
    "ProtectHome", "PrivateTmp", "StateDirectory", "StateDirectoryMode", "CacheDirectory",
    "CacheDirectoryMode", "Environment", "UMask", "LimitNOFILE", "ExecStart", "SystemCallFilter",
    "SystemCallErrorNumber", "RestrictAddressFamilies", "SystemCallArchitectures",
}  # fmt: skip
VERIFIED_ONLY = {
    "Type", "Restart", "RestartSec", "TimeoutStopSec", "ConfigurationDirectory", "PrivateDevices",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
    "LockPersonality", "CPUQuota", "MemoryMax", "Nice",
}  # fmt: skip


def _service(name: str) -> dict[str, str]:
    """The [Service] section of a unit (each key appears once in ours)."""
    section, found = "", {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in found, f"{name}: {key} twice"
            found[key] = value
    return found


def _with_execstart(name: str, pyz: Path, into: Path) -> Path:
    text = (UNITS / name).read_text()
    copy = into / name
    copy.write_text(text.replace("ExecStart=/usr/local/bin/amoskys ", f"ExecStart={pyz} ", 1))
    assert copy.read_text() != text
    return copy


def test_every_property_of_the_units_is_listed_as_emulated_or_verified_only() -> None:
    for name in UNIT_NAMES:
        keys = set(_service(name))
        assert keys - EMULATED - VERIFIED_ONLY == set(), name


def test_the_units_hold_the_sandbox_the_appliance_is_tested_under() -> None:
    for name, state in zip(UNIT_NAMES, ("amoskys", "amoskys-agent"), strict=True):
        unit = _service(name)
        assert unit["User"] == "amoskys" and "DynamicUser" not in unit
        assert (unit["StateDirectory"], unit["StateDirectoryMode"]) == (state, "0700")
        assert (unit["CacheDirectory"], unit["Environment"]) == (state, f"SHIV_ROOT=%C/{state}")
        assert (unit["ProtectSystem"], unit["ProtectHome"], unit["NoNewPrivileges"]) == (
            "strict",
            "read-only",
            "yes",
        )
        assert unit["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET"
        assert unit["SystemCallFilter"] == "@system-service"
        caps = "CAP_NET_RAW CAP_NET_ADMIN CAP_SYS_PTRACE"
        assert unit["AmbientCapabilities"] == unit["CapabilityBoundingSet"] == caps
        assert unit["Restart"] == "on-failure" and int(unit["LimitNOFILE"]) >= 4096 + 600
        assert unit["ExecStart"].startswith("/usr/local/bin/amoskys ")
    agent = _service("amoskys-agent.service")
    assert {"CPUQuota", "MemoryMax", "Nice"} <= set(agent)
    assert not {"CPUQuota", "MemoryMax", "Nice"} & set(_service("amoskys.service"))


@pytest.mark.needs_tool
def test_the_units_pass_systemd_analyze_verify_with_execstart_on_the_built_file(
    pyz: Path, tmp_path: Path
) -> None:
    tool = require_tool("systemd-analyze", "systemd")
    copies = [str(_with_execstart(name, pyz, tmp_path)) for name in UNIT_NAMES]
    result = subprocess.run([tool, "verify", *copies], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    # the check bites: a misspelt key is reported, a missing executable fails
    broken = tmp_path / "broken"
    broken.mkdir()
    typo = _with_execstart("amoskys.service", pyz, broken)
    typo.write_text(typo.read_text().replace("ProtectHome=", "ProtectHom="))
    result = subprocess.run([tool, "verify", str(typo)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'ProtectHom'" in result.stderr
    typo.write_text(typo.read_text().replace(str(pyz), str(tmp_path / "missing.pyz")))
    assert subprocess.run([tool, "verify", str(typo)], capture_output=True, timeout=60).returncode != 0


#: Run as root inside `unshare -m`: builds the unit's file system view, then drops to the unit's
#: credentials and execs the appliance. Arguments: state dir, cache dir, then the command.
SANDBOX = r"""
state=$1 cache=$2; shift 2
for mp in $(awk '{print $5}' /proc/self/mountinfo); do
  case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$mp"
done
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
for dir in "$state" "$cache"; do
  mount --bind "$dir" "$dir"
  mount -o remount,bind,rw "$dir"
done
umask 077
exec "$@"
"""


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    """A directory outside /tmp (the sandbox puts a fresh tmpfs there) and /home, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="amoskys-sandbox-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _appliance_config(web_port: int) -> str:
    return f"""
[collectors.process]
mode = "netlink"
[collectors.flow]
interface = "lo"
promiscuous = "off"
filter = "tcp port {web_port}"
tcp_end_linger_seconds = 0.0
[collectors.discovery]
enabled = false
"""


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _mounts(pid: int) -> dict[str, tuple[str, str]]:
    """mount point -> (mount options, file system type), as process `pid` sees them."""
    found = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        found[fields[4]] = (fields[5], fields[sep + 1])
    return found


@dataclass
class Sandboxed:
    """`amoskys run` from the built file under the emulated unit (see the module docstring)."""

    proc: subprocess.Popen[bytes]
    root: Path
    binary: Path
    env: dict[str, str]
    web_port: int

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def log(self) -> str:
        return (self.root / "run.log").read_text(errors="replace")

    def metric(self, name: str) -> float:
        return _metric_sum(http_get(self.url + "/metrics")[1].decode(), name)

    def export(self, kind: str) -> list[dict[str, Any]]:
        """`amoskys events export --kind KIND` as the unit's user on its data dir (what an admin runs)."""
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", str(self.binary)]
        result = subprocess.run(
            [*cmd, "events", "export", "--kind", kind, "--data-dir", str(self.state)],
            env={**self.env, "AMOSKYS_LOG_LEVEL": "warning"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["body"] for line in result.stdout.splitlines()]


def require_seccomp_binding() -> None:
    """Debian's python3-seccomp (libseccomp's binding), which seccomp_exec.py loads the filters with."""
    if subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True).returncode == 0:
        return
    message = f"needs libseccomp's binding for {SYSTEM_PYTHON}: sudo apt-get install -y python3-seccomp"
    if IN_CI:
        pytest.fail(f"{message} (CI must install it: see scripts/sysdeps.sh)")
    pytest.skip(message)


def _seccomp(root: Path, unit: dict[str, str], *, families: str = "") -> list[str]:
    """The command prefix that applies `unit`'s SystemCallFilter=, SystemCallErrorNumber= and
    RestrictAddressFamilies= (or `families`, comma-separated) to what it execs."""
    script = root / "bin" / "seccomp_exec.py"
    if not script.exists():
        script.parent.mkdir(exist_ok=True)
        shutil.copy(Path(__file__).parent / "seccomp_exec.py", script)
        script.chmod(0o755)
    return [
        SYSTEM_PYTHON, str(script), "--filter", unit["SystemCallFilter"], "--errno",
        unit["SystemCallErrorNumber"], "--families",
        families or ",".join(unit["RestrictAddressFamilies"].split()), "--",
    ]  # fmt: skip


@contextmanager
def sandboxed(pyz: Path, root: Path, caps: tuple[str, ...]) -> Iterator[Sandboxed]:
    """Start the appliance under the sandbox with `caps` (ambient, inheritable and bounding set) and
    wait for it to be ready; kill what is left at exit."""
    require_root("the sandbox needs a mount namespace, setpriv to another user and ambient capabilities")
    for tool in ("unshare", "setpriv", "prlimit"):
        require_tool(tool, "util-linux")
    require_tool("systemd-analyze", "systemd")  # the system call sets of SystemCallFilter=
    require_seccomp_binding()
    binary = root / "bin" / "amoskys"
    binary.parent.mkdir(exist_ok=True)
    shutil.copy(pyz, binary)
    binary.chmod(0o755)
    for d in (root / "state", root / "cache"):
        d.mkdir(mode=0o700)
        os.chown(d, NOBODY, NOBODY)
    web_port = free_port()
    config = root / "amoskys.toml"
    config.write_text(_appliance_config(web_port))
    config.chmod(0o644)
    env = {
        "PATH": SYSTEM_PATH,
        "HOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "STATE_DIRECTORY": str(root / "state"),
        "CACHE_DIRECTORY": str(root / "cache"),
        "SHIV_ROOT": str(root / "cache"),
        "AMOSKYS_LOG_LEVEL": "info",
    }
    capset = ",".join(f"+{c}" for c in caps)
    as_unit = [
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        f"--inh-caps=-all,{capset}", f"--ambient-caps=-all,{capset}", f"--bounding-set=-all,{capset}",
        "--no-new-privs", "--", *_seccomp(root, _service("amoskys.service")),
        "env", "-i", *(f"{k}={v}" for k, v in env.items()),
    ]  # fmt: skip
    command = [str(binary), "run", "--config", str(config)]
    command += ["--web-listen", f"127.0.0.1:{web_port}", "--bus-listen", "127.0.0.1:0"]
    with (root / "run.log").open("wb") as log:
        sandbox = ["unshare", "-m", "--propagation", "private", "--", "sh", "-euc", SANDBOX, "sandbox"]
        limits = ["prlimit", "--nofile=8192:8192", "--"]
        proc = subprocess.Popen(
            [*sandbox, str(root / "state"), str(root / "cache"), *limits, *as_unit, *command],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    app = Sandboxed(proc, root, binary, env, web_port)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode}:\n{app.log()}")
            return (app.state / "run.json").exists() and http_get(app.url + "/readyz")[0] == 200

        wait_for(ready, timeout=60, what="the sandboxed appliance to be ready")
        yield app
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextmanager
def other_users_processes() -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """Long-lived processes of users other than the appliance's, three of root's and three of daemon's
    (uid 1, through setpriv: two execs), each with its user's name."""
    probes = [(subprocess.Popen([SLEEP, f"{300 + i}"]), "root") for i in range(PER_USER)]
    as_daemon = ["setpriv", "--reuid=1", "--regid=1", "--clear-groups", SLEEP]
    probes += [(subprocess.Popen([*as_daemon, f"{400 + i}"]), "daemon") for i in range(PER_USER)]
    try:
        yield probes
    finally:
        for p, _ in probes:
            p.kill()
            p.wait()


def _enrichment(app: Sandboxed) -> dict[str, float]:
    """amoskys_process_exec_enrichment_total by result (complete, partial, gone)."""
    text = http_get(app.url + "/metrics")[1].decode()
    found = re.finditer(r'^amoskys_process_exec_enrichment_total\{result="(\w+)"\} (\S+)$', text, re.M)
    return {m.group(1): float(m.group(2)) for m in found}


def _last_execs(
    app: Sandboxed, probes: list[tuple[subprocess.Popen[bytes], str]]
) -> dict[int, dict[str, Any]]:
    """The last exec event of each probe's pid (setpriv execs, then sleep), once all have one."""

    def seen() -> dict[int, dict[str, Any]]:
        pids = {p.pid for p, _ in probes}
        execs = {b["pid"]: b for b in app.export("process") if b["kind"] == "EXEC" and b["pid"] in pids}
        done = all(pid in execs and execs[pid].get("argv", [""])[0] == SLEEP for pid in pids)
        return execs if done else {}

    found: dict[int, dict[str, Any]] = wait_for(
        seen, timeout=30, interval=0.2, what="the probes' exec events"
    )
    return found


@pytest.mark.e2e
@pytest.mark.needs_root
@pytest.mark.needs_tool
@pytest.mark.timeout(300)
def test_the_appliance_from_the_built_file_works_under_the_units_sandbox(
    pyz: Path, sandbox_root: Path
) -> None:
    with sandboxed(pyz, sandbox_root, CAPS) as app:
        _assert_confined(app.proc.pid, app.state, app.cache, CAP_MASK)

        # processes of other users, started after ready: seen through the proc connector, read via /proc
        before = _enrichment(app)
        with other_users_processes() as probes:
            execs = _last_execs(app, probes)
        after = _enrichment(app)
        digest = hashlib.sha256(Path(SLEEP).read_bytes()).hexdigest()
        read = {"exe": SLEEP, "cwd": os.getcwd(), "exe_sha256": digest}
        whole = [
            execs[p.pid]
            for p, user in probes
            if {**read, "user": user}.items() <= execs[p.pid].items() and not execs[p.pid].get("unreadable")
        ]
        # the enrichment ratio over other users' processes: 1.0 (exe, argv, user, cwd, sha256 all read)
        assert len(whole) == len(probes), [execs[p.pid] for p, _ in probes]
        # the collector counted them so (other execs on this machine may only add to the counts)
        assert after.get("complete", 0) - before.get("complete", 0) >= len(probes), (before, after)

        # the capture is live once it counts the test's own requests (ready comes before collectors run)
        wait_for(lambda: app.metric("amoskys_flow_packets_total") > 0, what="the capture to count packets")
        client_port = _tcp_exchange(app.web_port)

        def flow_seen() -> list[dict[str, Any]]:
            return [b for b in app.export("flow") if b.get("src_port") == client_port]

        try:
            flow = wait_for(flow_seen, timeout=30, interval=0.2, what="the connection as a flow record")[0]
        except AssertionError as err:
            raise AssertionError(f"{err}\nflows: {app.export('flow')}\n{app.log()}") from None
        assert (flow["dst_port"], flow["interface"], flow["final"]) == (app.web_port, "lo", True), flow
        assert flow["end_reason"] == "END_OF_FLOW" and flow["community_id"].startswith("1:"), flow
        assert flow["forward"]["packets"] >= 3 and flow["reverse"]["octets"] > 0, flow

        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(timeout=30) == 0, app.log()
    assert pids_running(str(sandbox_root)) == []
    # the libraries unpacked into the cache directory, as the unit's user
    assert next(app.cache.glob("amoskys_*/site-packages")).stat().st_uid == NOBODY
    assert (app.state / "events.db").stat().st_uid == NOBODY


@pytest.mark.e2e
@pytest.mark.needs_root
@pytest.mark.needs_tool
@pytest.mark.timeout(300)
def test_without_cap_sys_ptrace_the_exe_and_hash_of_other_users_processes_go_missing(
    pyz: Path, sandbox_root: Path
) -> None:
    caps = ("net_raw", "net_admin")
    with sandboxed(pyz, sandbox_root, caps) as app:
        _assert_confined(app.proc.pid, app.state, app.cache, (1 << 12) | (1 << 13))
        before = _enrichment(app)
        with other_users_processes() as probes:
            execs = _last_execs(app, probes)
        after = _enrichment(app)
        for probe, _ in probes:
            body = execs[probe.pid]
            assert "exe" not in body and "exe_sha256" not in body and "cwd" not in body, body
            assert {"exe", "exe_sha256", "cwd"} <= set(body["unreadable"]), body
            assert body["argv"][0] == SLEEP  # world-readable /proc/<pid>/cmdline: no capability needed
        assert after.get("partial", 0) - before.get("partial", 0) >= len(probes), (before, after)
        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(timeout=30) == 0, app.log()


#: Run under seccomp_exec.py as the unit's user: a system call outside @system-service, and a socket
#: of a family outside the list; prints what each returned.
FILTER_PROBE = """
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(0, 0, None, None), os.strerror(ctypes.get_errno()) if ctypes.get_errno() else "")
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    print("inet ok")
except OSError as err:
    print("inet", err.errno)
"""


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_the_seccomp_emulation_refuses_what_the_unit_refuses(sandbox_root: Path) -> None:
    require_root("setpriv to another user")
    require_tool("setpriv", "util-linux")
    require_tool("systemd-analyze", "systemd")
    require_seccomp_binding()
    unit = _service("amoskys.service")
    as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs", "--"]

    def probe(*prefix: str) -> str:
        cmd = [*as_user, *prefix, SYSTEM_PYTHON, "-c", FILTER_PROBE]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    # ptrace(PTRACE_TRACEME) is allowed to anyone, but is not in @system-service: EPERM under the filter
    assert probe() == "ptrace 0 \ninet ok\n"
    assert probe(*_seccomp(sandbox_root, unit)) == "ptrace -1 Operation not permitted\ninet ok\n"
    # the address-family filter, shown with a list that leaves AF_INET out
    refused = f"ptrace -1 Operation not permitted\ninet {errno.EAFNOSUPPORT}\n"
    assert probe(*_seccomp(sandbox_root, unit, families="AF_UNIX")) == refused


def _assert_confined(pid: int, state: Path, cache: Path, cap_mask: int) -> None:
    """The running appliance holds exactly the unit's credentials, limits and file system view."""
    status = _status(pid)
    assert status["Uid"].split() == [str(NOBODY)] * 4 and status["Groups"] == ""
    for capset in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
        assert int(status[capset], 16) == cap_mask, (capset, status[capset])
    assert status["NoNewPrivs"] == "1" and status["Umask"] == "0077"
    assert (status["Seccomp"], status["Seccomp_filters"]) == ("2", "2")  # system calls, address families
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert re.search(r"^Max open files\s+8192\s+8192\s", limits, re.M), limits
    mounts = _mounts(pid)
    assert mounts["/"][0].split(",")[0] == "ro"
    assert mounts["/tmp"][1] == "tmpfs"
    for writable in (state, cache):
        assert mounts[str(writable)][0].split(",")[0] == "rw"
    assert all(
        opts.split(",")[0] == "ro"
        for mp, (opts, _) in mounts.items()
        if mp not in ("/tmp", str(state), str(cache)) and not mp.startswith(("/proc", "/sys", "/dev"))
    )


def _metric_sum(text: str, name: str) -> float:
    """The sum of every series of metric `name` in a Prometheus text exposition."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _tcp_exchange(port: int) -> int:
    """One HTTP request on loopback from a client port of its own; returns that port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while conn.recv(4096):
            pass
        return int(conn.getsockname()[1])
