"""Regenerate the README's dashboard screenshots (docs/screenshots/*.png) from a real appliance with
real data, as root (`make screenshots`):

- `amoskys run` with the flow and discovery collectors on one end of a veth pair whose other end is in
  a network namespace; tcpreplay sends the flow collector's test pcaps and a synthetic mix
  (tests/collectors/flow/flow_traffic.py) out of that end, and live TCP, UDP and HTTP conversations
  run between this host and the namespace;
- host edge-1 at the other end: PID, UTS and mount namespaces of its own in that network namespace,
  running an `amoskys agent` enrolled with a one-time token, a web server and two named programs (run
  from the temporary directory, which raises exec_path alerts);
- SNMP: snmpsim serving a recorded switch with a bridge forwarding table (polled with the `fdb`
  profile; edge-1's end of the veth takes the MAC that table puts on Gi0/3) and a switch whose
  counters move, plus net-snmp's snmpd on loopback reporting this host.

Once every page has data (polled, each with a deadline), Playwright drives Debian's chromium through
the pages and writes viewport-sized PNGs. Everything started is stopped, and the namespaces and the
veth pair removed, however the script ends.

The veth pair, the conversations, the traffic mix and the SNMP agents come from the test helpers
(tests/support.py, tests/collectors/flow/flow_veth.py and flow_traffic.py,
tests/collectors/snmp/snmp_agents.py), imported from their folders put on sys.path as the tests'
conftest.py files do.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
for _helpers in (TESTS, TESTS / "collectors" / "flow", TESTS / "collectors" / "snmp"):
    sys.path.insert(0, str(_helpers))

from snmp_agents import SnmpDaemon, SnmpSim, device_snmprec, free_udp_port  # noqa: E402

from chromium import CHROMIUM_ARGS, log_in  # noqa: E402
from flow_traffic import write as write_traffic  # noqa: E402
from flow_veth import Veth, address_veth, tcp_pair, tcp_talk, udp_pair, udp_talk, veth_pair  # noqa: E402
from support import RunningAppliance, wait_for  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
AMOSKYS = ROOT / ".venv" / "bin" / "amoskys"
FDB_RECORDING = TESTS / "collectors" / "snmp" / "recordings" / "fdb-switch.snmprec"
#: The MAC the recorded forwarding table puts behind bridge port 5 (Gi0/3, VLAN 10): the namespace's
#: end of the veth pair takes it, so the device discovery finds is the one the switch table names.
FDB_MAC = "3c:2a:f4:a1:b2:c3"
#: The flow collector's golden pcaps replayed as they are (each a few conversations of one kind).
PCAPS = ["tcp_fin", "udp", "icmp", "ipv6", "vlan", "misc_protocols", "tcp_rst"]
APPLIANCE_NAME = "lab-gw"
AGENT_NAME = "edge-1"
PROCESS_NAMES = ["nightly-backup", "log-shipper"]
TOOLS = {
    "ip": "iproute2",
    "tcpreplay": "tcpreplay",
    "snmpd": "snmpd",
    "snmpget": "snmp",
    "chromium": "chromium",
    "unshare": "util-linux",
    "nsenter": "util-linux",
}


def say(text: str) -> None:
    print(f"screenshots: {text}", file=sys.stderr, flush=True)


class Stop(Exception):
    """SIGTERM or SIGHUP: unwind (every cleanup runs) and exit non-zero."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the cleanup short
        signal.signal(sig, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def preflight() -> str:
    """The chromium path; exits with the reason when not root or a tool is missing."""
    if os.geteuid() != 0:
        sys.exit(
            "screenshots: needs root: it makes a network namespace and a veth pair, captures on it and "
            "replays traffic with tcpreplay (run `sudo make screenshots`)"
        )
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        sys.exit(f"screenshots: missing system packages: apt-get install -y {' '.join(missing)}")
    if not AMOSKYS.exists():
        sys.exit(f"screenshots: {AMOSKYS} is missing: run `make test-quick` (or `make run`) first")
    return shutil.which("chromium") or "chromium"


def ip(*args: str, netns: str = "") -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def child(
    cmd: list[str], log: Path, *, env: dict[str, str] | None = None, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process writing to `log`; SIGTERM on exit, SIGKILL after 15 s."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                say(f"{what} did not stop within 15 s of SIGTERM: killed")
                proc.kill()
                proc.wait(timeout=10)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOSKYS_", "XDG_", "STATE_"))}
    env.update({"PYTHONUNBUFFERED": "1", "AMOSKYS_LOG_LEVEL": "info"})
    return env


def secret_file(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def appliance_config(tmp: Path, veth: Veth, here: str, sim: SnmpSim, snmpd: SnmpDaemon) -> str:
    subnet = ipaddress.ip_interface(f"{here}/29").network
    targets = [
        (
            "access-sw",
            sim.port,
            secret_file(tmp / "community-access-sw", "access-sw"),
            '["interfaces", "fdb"]',
        ),
        ("core-sw", sim.port, secret_file(tmp / "community-core-sw", "core-sw"), '["interfaces"]'),
        (
            APPLIANCE_NAME,
            snmpd.port,
            secret_file(tmp / "community-snmpd", snmpd.community),
            '["interfaces", "host_resources"]',
        ),
    ]
    snmp = "".join(
        f'[[collectors.snmp.targets]]\nname = "{name}"\naddress = "127.0.0.1"\nport = {port}\n'
        f'community_file = "{community}"\nprofiles = {profiles}\n'
        for name, port, community, profiles in targets
    )
    return f"""\
[appliance]
name = "{APPLIANCE_NAME}"
[bus]
listen = "{here}:0"
server_ip_addresses = ["127.0.0.1", "{here}"]
[collectors.heartbeat]
interval_seconds = 5
[collectors.host]
interval_seconds = 2
[collectors.process]
snapshot_interval_seconds = 5
[collectors.flow]
interface = "{veth.capture}"
idle_timeout_seconds = 5.0
tcp_idle_timeout_seconds = 10.0
tcp_end_linger_seconds = 0.5
active_timeout_seconds = 10.0
[collectors.discovery]
interface = "{veth.capture}"
subnets = ["{subnet}"]
sweep_interval_seconds = 30
neighbour_table_interval_seconds = 2.0
[collectors.snmp]
interval_seconds = 3
deadline_seconds = 3
{snmp}"""


AGENT_CONFIG = """\
[web]
listen = "127.0.0.1:0"
[collectors.heartbeat]
interval_seconds = 5
[collectors.host]
interval_seconds = 2
[collectors.process]
snapshot_interval_seconds = 5
"""


class EdgeHost:
    """Host edge-1: `command` (its agent) as process 1 of new PID, UTS (host name edge-1) and mount
    namespaces (its own /proc) inside network namespace `netns`; `run` starts more processes in them.
    Stopped with SIGTERM to its process 1 (unshare passes no signal on), SIGKILL after 15 s: when it
    ends, the kernel ends every process of the PID namespace."""

    def __init__(self, netns: str, command: list[str], log: Path, env: dict[str, str]) -> None:
        script = f'hostname {AGENT_NAME} && exec "$0" "$@"'
        self.cmd = ["ip", "netns", "exec", netns, "unshare", "--pid", "--fork", "--mount-proc", "--uts"]
        self.cmd += ["--kill-child", "sh", "-c", script, *command]
        self.log, self.env = log, env
        self.stack = ExitStack()
        self.init_pid = 0

    def __enter__(self) -> EdgeHost:
        try:
            proc = self.stack.enter_context(child(self.cmd, self.log, env=self.env, what=AGENT_NAME))
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            found = wait_for(
                lambda: children.read_text().split()[:1], timeout=10, interval=0.05, what="edge-1"
            )
            self.init_pid = int(found[0])
            self.stack.callback(self._stop_init, proc)
        except BaseException:
            self.stack.close()
            raise
        return self

    def _stop_init(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        os.kill(self.init_pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            say(f"{AGENT_NAME}'s agent did not stop within 15 s of SIGTERM: killed")
            os.kill(self.init_pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def run(self, command: list[str], log: Path, what: str) -> Any:
        """`command` on edge-1 (nsenter into its namespaces), as a context manager like `child`."""
        return child(["nsenter", "--target", str(self.init_pid), "--all", *command], log, what=what)


class Traffic:
    """Live conversations between this host (`here`) and the namespace (`peer`) every few seconds until
    stopped: a TCP echo exchange, a UDP request/response and an HTTP GET to a server in the namespace."""

    def __init__(self, veth: Veth, here: str, peer: str, http_port: int) -> None:
        self.veth, self.here, self.peer, self.http_port = veth, here, peer, http_port
        self.stop = threading.Event()
        self.rounds = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def one_round(self) -> None:
        _, client, listener = tcp_pair("", self.here, self.veth.netns, self.peer)
        tcp_talk(client, listener, [1200, 24_000, 8000])
        _, uclient, userver = udp_pair("", self.here, self.veth.netns, self.peer)
        udp_talk(uclient, userver, [90, 400, 1200])
        with urllib.request.urlopen(f"http://{self.peer}:{self.http_port}/", timeout=10) as reply:
            reply.read()
        self.rounds += 1

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.one_round()
            except (OSError, AssertionError) as err:
                self.failures.append(str(err))
            self.stop.wait(3.0)  # pacing between rounds, not a wait for anything

    def __enter__(self) -> Traffic:
        self.one_round()  # the first round in the foreground: a broken rig fails here, loudly
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


class Dashboard:
    """The appliance's JSON API with the admin's session (a urllib opener with its cookie)."""

    def __init__(self, base: str, password: str) -> None:
        import http.cookiejar

        self.base = base
        self.password = password
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        body = json.dumps({"name": "admin", "password": password}).encode()
        request = urllib.request.Request(
            base + "/api/v1/login", data=body, headers={"Content-Type": "application/json"}
        )
        with self.opener.open(request, timeout=10) as reply:
            reply.read()

    def get(self, path: str) -> Any:
        with self.opener.open(self.base + path, timeout=10) as reply:
            return json.loads(reply.read())


def wait_data(what: str, check: Callable[[], Any], timeout: float) -> Any:
    say(f"waiting for {what}")
    return wait_for(check, timeout=timeout, interval=0.5, what=what)


def run(args: argparse.Namespace, chromium: str, stack: ExitStack) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="amoskys-"))
    if args.keep:
        say(f"keeping {tmp}")
    else:
        stack.callback(shutil.rmtree, tmp, True)
    env = clean_env()

    # the link: a veth pair, the far end in a namespace with the MAC the switch's FDB names
    veth = stack.enter_context(veth_pair())
    ip("link", "set", veth.peer, "address", FDB_MAC, netns=veth.netns)
    ip("link", "set", "lo", "up", netns=veth.netns)
    here, peer = address_veth(veth)
    say(f"veth {veth.capture} ({here}) <-> {veth.netns}:{veth.peer} ({peer}, {FDB_MAC})")

    # SNMP agents
    sim_data = tmp / "snmpsim" / "data"
    sim_data.mkdir(parents=True)
    shutil.copy(FDB_RECORDING, sim_data / "access-sw.snmprec")
    (sim_data / "core-sw.snmprec").write_text(device_snmprec("core-sw", 8, octets_per_second=180_000))
    sim = SnmpSim(sim_data, [free_udp_port()]).start("core-sw")
    stack.callback(sim.stop)
    snmpd = SnmpDaemon(tmp / "snmpd", free_udp_port(), sys_name=APPLIANCE_NAME).start()
    stack.callback(snmpd.stop)
    say(f"snmpsim on 127.0.0.1:{sim.port}, snmpd on 127.0.0.1:{snmpd.port}")

    # the appliance
    config = tmp / "amoskys.toml"
    config.write_text(appliance_config(tmp, veth, here, sim, snmpd))
    data = tmp / "data"
    log = tmp / "amoskys.log"
    proc = stack.enter_context(
        child(
            [
                str(AMOSKYS),
                "run",
                "--config",
                str(config),
                "--data-dir",
                str(data),
                "--web-listen",
                "127.0.0.1:0",
            ],
            log,
            env=env,
            what="the appliance",
        )
    )
    app = RunningAppliance(proc=proc, data_dir=data, log_path=log)
    app.wait_ready(timeout=90)
    wait_for(
        lambda: all(fact in app.log() for fact in ("flow_capture_started", "discovery_started")),
        timeout=30,
        interval=0.1,
        what="the capture and the ARP sweep to start",
    )
    say(f"appliance ready: {app.web_url} (log {log})")

    # edge-1: a host of its own in the namespace, its agent enrolled with a one-time token
    identity = tmp / "agent-identity"
    enrol_agent(config, data, veth.netns, identity, env)
    agent_config = tmp / "agent.toml"
    agent_config.write_text(AGENT_CONFIG)
    agent = [str(AMOSKYS), "agent", "--identity", str(identity), "--config", str(agent_config)]
    edge = stack.enter_context(
        EdgeHost(veth.netns, [*agent, "--data-dir", str(tmp / "agent-data")], tmp / "agent.log", env)
    )
    api = Dashboard(app.web_url, (data / "admin-password").read_text().strip())
    wait_data("the agent's heartbeat", lambda: _agent_seen(api), timeout=90)

    # on edge-1, started once its agent watches: a web server and two programs by name
    http_port = 80
    www = tmp / "www"
    www.mkdir()
    (www / "index.html").write_text(f"<!doctype html><title>{AGENT_NAME}</title><p>status: ok</p>\n")
    web = [sys.executable, "-m", "http.server", str(http_port), "--bind", peer, "--directory", str(www)]
    stack.enter_context(edge.run(web, tmp / "http.log", "the web server"))
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name in PROCESS_NAMES:
        shutil.copy("/bin/sleep", bin_dir / name)
        stack.enter_context(edge.run([str(bin_dir / name), "3600"], tmp / f"{name}.log", name))
    wait_for(lambda: _answers(peer, http_port), timeout=20, interval=0.1, what="the web server")

    # traffic: the pcaps replayed, live conversations
    mix = tmp / "mix.pcap"
    write_traffic(mix, args.packets, seed=11, concurrent=40, rate_pps=1000)
    for case in PCAPS:
        veth.replay(TESTS / "collectors" / "flow" / "testcases" / case / "input.pcap")
    say(f"replaying {args.packets} packets of synthetic traffic at their recorded pace")
    veth.replay(mix, "--multiplier=1")
    traffic = stack.enter_context(Traffic(veth, here, peer, http_port))

    # every page has its data
    wait_data("flows to the namespace", lambda: api.get(f"/api/v1/search?q={peer}")["flows"], timeout=60)
    wait_data(
        f"the device {FDB_MAC} with its switch port",
        lambda: api.get(f"/api/v1/devices/{FDB_MAC}").get("switch_ports"),
        timeout=90,
    )
    wait_data(
        "the named processes' execs",
        lambda: all(api.get(f"/api/v1/search?q={n}")["execs"] for n in PROCESS_NAMES),
        timeout=60,
    )
    wait_data(
        "rated SNMP interfaces",
        lambda: any(i.get("in_bps") for i in api.get("/api/v1/snmp/targets/core-sw/interfaces")["items"]),
        timeout=60,
    )
    wait_data("alerts", lambda: api.get("/api/v1/alerts")["items"], timeout=60)
    minutes = args.minutes
    wait_data(
        f"host samples of both hosts in {minutes} chart points (minutes)",
        lambda: all(_host_points(api, source) >= minutes for source in (APPLIANCE_NAME, AGENT_NAME)),
        timeout=60 * minutes + 120,
    )
    if traffic.failures:
        say(f"{len(traffic.failures)} traffic rounds failed, e.g. {traffic.failures[0]}")
    say(f"{traffic.rounds} rounds of live traffic")
    shoot(app.web_url, api.password, chromium, args.out)


def enrol_agent(config: Path, data: Path, netns: str, identity: Path, env: dict[str, str]) -> None:
    """As README's "Enrolling an agent from its own host": `amoskys agents token` on the appliance prints
    the `amoskys agent enroll ...` line, run as printed in the namespace (the keys are made there).
    The token is asked for with the appliance's --config: without it the embedded defaults' bus server
    names would apply (tests/e2e/agent_harness.py enrols agents of appliances on those defaults)."""
    common = {"check": True, "capture_output": True, "text": True, "timeout": 120, "env": env, "cwd": ROOT}
    token = [str(AMOSKYS), "agents", "token", AGENT_NAME, "--config", str(config), "--data-dir", str(data)]
    line = subprocess.run(token, **common).stdout  # type: ignore[call-overload]
    words = shlex.split(line.strip())
    if words[:3] != ["amoskys", "agent", "enroll"]:
        raise RuntimeError(f"`amoskys agents token` printed {line!r}")
    enrol = [*words[1:], "--name", AGENT_NAME, "--identity", str(identity)]
    done = subprocess.run(["ip", "netns", "exec", netns, str(AMOSKYS), *enrol], **common)  # type: ignore[call-overload]
    say(done.stdout.strip())


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _agent_seen(api: Dashboard) -> bool:
    agents = api.get("/api/v1/agents")
    return any(a.get("name") == AGENT_NAME and a.get("last_seen_ns") for a in agents["items"])


def _host_points(api: Dashboard, source: str) -> int:
    """Points (minutes) of `source`'s CPU chart over the last 15 minutes."""
    series = api.get(f"/api/v1/series/host?range=15m&source={source}")["series"]
    return max((len(s["points"]) for s in series), default=0)


def shoot(base: str, password: str, chromium: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    desktop = {"width": 1280, "height": 800}
    # (file name, path, the section scrolled to the top of the viewport: "" none)
    pages = [
        ("overview", "/", ""),
        ("flows", "/flows", "#flows"),
        ("processes", f"/processes?source={AGENT_NAME}", ""),
        ("host", f"/hosts/{AGENT_NAME}", ""),
        ("device", f"/devices/{FDB_MAC}", ""),
        ("snmp", "/snmp?target=core-sw", ""),
        ("alerts", "/alerts", ""),
        ("agents", "/agents", ""),
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport=desktop)
            # the charts' range picker on 15 minutes: the run's few minutes fill a visible part
            context.add_init_script("localStorage.setItem('amoskys.range', '15m')")
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            log_in(page, base, password)
            for name, path, section in pages:
                page.goto(base + path)
                settle(page)
                if section:
                    page.locator(section).evaluate(SCROLL_TO)
                page.screenshot(path=str(out / f"{name}.png"))
                say(f"wrote {out / f'{name}.png'} ({path})")
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(base + "/")
            settle(page)
            page.screenshot(path=str(out / "overview-phone.png"))
            say(f"wrote {out / 'overview-phone.png'} (/ at 390x844)")
            if errors:
                raise RuntimeError(f"script errors on the pages: {errors}")
        finally:
            browser.close()


#: Scrolls the page so that the section holding the element starts just below the sticky page header.
SCROLL_TO = """(el) => {
  const header = document.querySelector("body > header, header");
  const below = header ? header.getBoundingClientRect().height : 0;
  const top = el.closest("section").getBoundingClientRect().top + window.scrollY;
  window.scrollTo(0, Math.max(0, top - below - 8));
}"""


def settle(page: Any) -> None:
    """Until the page is loaded and each of its charts drew its data (or said why it has none)."""
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure.tchart[data-src]')].every("
        "f => f.dataset.state === 'drawn' || f.dataset.state === 'error')",
        timeout=30_000,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the PNGs go (default {OUT})")
    parser.add_argument("--packets", type=int, default=3000, help="packets of synthetic traffic replayed")
    parser.add_argument(
        "--minutes",
        type=int,
        default=3,
        help="minute points the charts hold before the screenshots are taken (default 3)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    args = parser.parse_args()
    chromium = preflight()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            run(args, chromium, stack)
    except (Stop, KeyboardInterrupt) as err:
        say(f"stopped ({err or 'SIGINT'}); everything started was stopped and removed")
        return 1
    except (AssertionError, RuntimeError, OSError, subprocess.SubprocessError) as err:
        hint = "" if args.keep else " (--keep keeps the logs and stores of a run)"
        say(f"failed: {err}{hint}")
        return 1
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
