"""Write the SNMP collector's testcases and, on request, their expected output.

    .venv/bin/python tests/collectors/snmp/make_snmp_testcases.py                # rewrite the inputs
    .venv/bin/python tests/collectors/snmp/make_snmp_testcases.py --expected     # ... and expected.jsonl
    .venv/bin/python tests/collectors/snmp/make_snmp_testcases.py --check-agent  # RecordedAgent == snmpsim?

Each ``testcases/<case>/`` holds one ``pollN.snmprec`` per poll (snmpsim's recording format), an
optional ``config.toml`` and ``expected.jsonl`` (see snmp_replay.py). ``recorded_linux`` and
``recorded_winxp`` are cut from the device recordings snmpsim ships (``data/recorded``: a real Linux
net-snmp agent and a real Windows XP agent; only the subtrees the collector walks are kept); the
other cases are switches written here, one recording per poll, their counters chosen to exercise
rates, wraps, resets and restarts. expected.jsonl is written only with ``--expected``: review it in
the diff; test_snmp_testcases.py compares, it never rewrites. ``--check-agent`` serves every
recording with snmpsim on 127.0.0.1 and checks that the collector's fetch reads the same values from
it as from the replay's RecordedAgent (needs net-snmp's snmpget, as the snmpsim tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent.parent)]  # snmp_replay, snmp_harness, snmp_agents, support

from snmp_agents import RECORDED  # noqa: E402

from amoskys.collectors.snmp.oids import oid  # noqa: E402

from snmp_replay import CASES_DIR, case_config, case_target, cases, polls, run_case  # noqa: E402

#: The subtrees a poll reads: the system group, ifTable, ifXTable, hrStorageTable, hrProcessorTable.
WALKED = (
    "1.3.6.1.2.1.1.",
    "1.3.6.1.2.1.2.",
    "1.3.6.1.2.1.31.1.1.",
    "1.3.6.1.2.1.25.2.3.",
    "1.3.6.1.2.1.25.3.3.",
)
HOST_RESOURCES = '[collectors.snmp]\nprofiles = ["interfaces", "host_resources"]\n'


def recorded(file: str) -> str:
    """The lines of one of snmpsim's recordings under the subtrees the collector walks, as recorded."""
    text = (RECORDED / file).read_text(encoding="iso-8859-1")
    return "".join(line + "\n" for line in text.splitlines() if line.startswith(WALKED))


# ---------------------------------------------------------------- switches written here
@dataclass
class Port:
    """One interface at one poll (octet counters are the raw counter values)."""

    descr: str
    in_octets: int
    out_octets: int
    name: str = ""  # ifName; "Gi0/<n>" unless set
    speed: int = 1_000_000_000
    high_speed: int = 1000
    oper: int = 1
    alias: str = ""
    hc: bool = True  # has the 64-bit counters (ifXTable)
    discontinuity: int = 0
    in_errors: int = 0
    descr_hex: str = ""  # the raw bytes of ifDescr, when not text


def device(
    name: str, uptime: int, ports: list[Port], *, system: dict[str, tuple[str, str]] | None = None
) -> str:
    """A switch as a .snmprec text: the system group, ifTable and (for HC ports) ifXTable, sorted by
    OID as snmpsim wants it. `system` overrides system scalars by sub-identifier ("1" .. "6")."""
    scalars = {
        "1": ("4", f"AMOSKYS testcase switch {name}"),
        "2": ("6", "1.3.6.1.4.1.9.1.2694"),
        "3": ("67", str(uptime)),
        "4": ("4", "noc@example.net"),
        "5": ("4", name),
        "6": ("4", "rack 7, row B"),
    }
    scalars.update(system or {})
    rows: list[tuple[str, str, str]] = [
        (f"1.3.6.1.2.1.1.{k}.0", tag, v) for k, (tag, v) in scalars.items() if tag
    ]
    rows.append(("1.3.6.1.2.1.2.1.0", "2", str(len(ports))))
    t, x = "1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"
    for i, p in enumerate(ports, 1):
        descr = ("4x", p.descr_hex) if p.descr_hex else ("4", p.descr)
        rows += [
            (f"{t}.1.{i}", "2", str(i)),
            (f"{t}.2.{i}", *descr),
            (f"{t}.3.{i}", "2", "6"),
            (f"{t}.5.{i}", "66", str(min(p.speed, 4_294_967_295))),
            (f"{t}.6.{i}", "4x", f"02000000{i:04x}"),
            (f"{t}.7.{i}", "2", "1"),
            (f"{t}.8.{i}", "2", str(p.oper)),
            (f"{t}.9.{i}", "67", "0"),
            (f"{t}.10.{i}", "65", str(p.in_octets % 2**32)),
            (f"{t}.11.{i}", "65", str(p.in_octets // 1000 % 2**32)),
            (f"{t}.13.{i}", "65", "0"),
            (f"{t}.14.{i}", "65", str(p.in_errors)),
            (f"{t}.16.{i}", "65", str(p.out_octets % 2**32)),
            (f"{t}.17.{i}", "65", str(p.out_octets // 1000 % 2**32)),
            (f"{t}.19.{i}", "65", "0"),
            (f"{t}.20.{i}", "65", "0"),
        ]
        if p.hc:
            rows += [
                (f"{x}.1.{i}", "4", p.name or f"Gi0/{i}"),
                (f"{x}.2.{i}", "65", "0"),
                (f"{x}.3.{i}", "65", "0"),
                (f"{x}.4.{i}", "65", "0"),
                (f"{x}.5.{i}", "65", "0"),
                (f"{x}.6.{i}", "70", str(p.in_octets)),
                (f"{x}.7.{i}", "70", str(p.in_octets // 1000)),
                (f"{x}.8.{i}", "70", "12"),
                (f"{x}.9.{i}", "70", "3"),
                (f"{x}.10.{i}", "70", str(p.out_octets)),
                (f"{x}.11.{i}", "70", str(p.out_octets // 1000)),
                (f"{x}.12.{i}", "70", "7"),
                (f"{x}.13.{i}", "70", "1"),
                (f"{x}.15.{i}", "66", str(p.high_speed)),
                (f"{x}.18.{i}", "4", p.alias),
                (f"{x}.19.{i}", "67", str(p.discontinuity)),
            ]
    rows.sort(key=lambda row: oid(row[0]))
    return "".join(f"{name_}|{tag}|{value}\n" for name_, tag, value in rows)


def case_switch_rates() -> tuple[list[str], str]:
    """A 4-port switch polled three times, a minute apart, on 64-bit counters: rates in bit/s from
    the counters and the sysUpTime of the same response; a 10G port whose ifSpeed saturates (speed
    from ifHighSpeed); a port down; at the third poll port 2's ifCounterDiscontinuityTime moved (its
    counters reset: no rate for it, only for the others)."""

    def poll(n: int) -> str:
        return device(
            "core-sw1",
            100_000 + 6_000 * n,
            [
                Port("GigabitEthernet0/1", 10**9 + 7_500_000 * n, 2 * 10**9 + 3_000_000 * n, alias="uplink"),
                Port(
                    "GigabitEthernet0/2",
                    5_000 * n if n < 2 else 1_234,
                    900 * n if n < 2 else 99,
                    discontinuity=0 if n < 2 else 190_000,
                ),
                Port("GigabitEthernet0/3", 42, 42, oper=2),
                Port(
                    "TenGigabitEthernet1/1",
                    2**40 + 750_000_000 * n,
                    2**33,
                    speed=10**10,
                    high_speed=10_000,
                    name="Te1/1",
                ),
            ],
        )

    return [poll(0), poll(1), poll(2)], ""


def case_counter32_wrap() -> tuple[list[str], str]:
    """A switch without ifXTable: the first poll finds no 64-bit counters and walks the 32-bit ones
    in a second walk; the next poll walks them at once. Between the polls port 1's ifInOctets wraps
    at 2^32 (a plausible rate: kept); port 2 (speed unknown) goes back by more than half the range (a
    reset); port 3's wraps, but the rate would be far above its 10 Mbit/s line rate (a reset, not a
    spike)."""
    first = [
        Port("Fa0/1", 2**32 - 1_000_000, 10_000, speed=100_000_000, hc=False),
        Port("Fa0/2", 2_000_000_000, 10_000, speed=0, hc=False),
        Port("Fa0/3", 2**32 - 1_000, 10_000, speed=10_000_000, hc=False),
    ]
    second = [
        Port("Fa0/1", 2**32 + 5_000_000, 70_000, speed=100_000_000, hc=False),
        Port("Fa0/2", 100, 70_000, speed=0, hc=False),
        Port("Fa0/3", 2**32 + 1_000_000_000, 70_000, speed=10_000_000, hc=False),
    ]
    return [device("access-sw9", 50_000, first), device("access-sw9", 56_000, second)], ""


def case_agent_restart() -> tuple[list[str], str]:
    """sysUpTime went back between two polls: the agent restarted, every interface's counters reset,
    no rates; the poll after that has rates again (against the restarted agent)."""
    ports = [Port("Gi0/1", 900_000_000_000, 800_000_000_000), Port("Gi0/2", 5_000_000, 4_000_000)]
    restarted = [Port("Gi0/1", 60_000, 50_000), Port("Gi0/2", 1_000, 1_000)]
    later = [Port("Gi0/1", 60_000 + 6_000_000, 50_000 + 600_000), Port("Gi0/2", 1_000, 1_000)]
    return [
        device("edge-rtr", 9_000_000, ports),
        device("edge-rtr", 4_500, restarted),
        device("edge-rtr", 10_500, later),
    ], ""


def case_malformed_agent() -> tuple[list[str], str]:
    """An agent answering badly. Poll 2 lacks sysUpTime.0: the poll fails (an unreachable sample with
    the error, counted) and the state of poll 1 is kept. Poll 3 answers with wrong types and bytes:
    sysName as an INTEGER, an ifDescr of invalid UTF-8 with a NUL, ifHCInOctets as an OCTET STRING
    (no 64-bit in counter: no in rate) — the sample still comes, rates against poll 1."""
    good = [Port("Gi0/1", 1_000_000, 2_000_000), Port("Gi0/2", 10, 10)]
    later = [Port("Gi0/1", 1_000_000 + 12_000_000, 2_000_000 + 1_200_000), Port("Gi0/2", 10, 10)]
    poll3 = device("flaky", 212_000, later, system={"5": ("2", "42")})
    poll3 = poll3.replace("1.3.6.1.2.1.2.2.1.2.2|4|Gi0/2", "1.3.6.1.2.1.2.2.1.2.2|4x|4769c3283000ff")
    poll3 = poll3.replace(
        f"1.3.6.1.2.1.31.1.1.1.6.1|70|{1_000_000 + 12_000_000}", "1.3.6.1.2.1.31.1.1.1.6.1|4|13000000"
    )
    return [
        device("flaky", 200_000, good),
        device("flaky", 206_000, good, system={"3": ("", "")}),
        poll3,
    ], ""


CASES: dict[str, Callable[[], tuple[list[str], str]]] = {
    "recorded_linux": lambda: ([recorded("linux-full-walk.snmprec")], HOST_RESOURCES),
    "recorded_winxp": lambda: ([recorded("winxp-full-walk.snmprec")], HOST_RESOURCES),
    "switch_rates": case_switch_rates,
    "counter32_wrap": case_counter32_wrap,
    "agent_restart": case_agent_restart,
    "malformed_agent": case_malformed_agent,
}


def write_case(name: str) -> None:
    recordings, config = CASES[name]()
    folder = CASES_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("poll*.snmprec"):
        old.unlink()
    for number, text in enumerate(recordings, 1):
        (folder / f"poll{number}.snmprec").write_text(text, encoding="iso-8859-1")
    config_path = folder / "config.toml"
    if config:
        config_path.write_text(config)
    elif config_path.exists():
        config_path.unlink()


# ---------------------------------------------------------------- --check-agent
async def check_agent() -> int:
    """Fetch every recording from snmpsim (over loopback) and from RecordedAgent with the collector's
    `fetch`; the values must agree. Returns how many recordings differ."""
    from snmp_agents import SnmpSim, free_udp_port

    from amoskys.collectors.clock import SystemClock
    from amoskys.collectors.snmp.client import SnmpClient, auth_data, session_for
    from amoskys.collectors.snmp.config import SnmpTargetConfig
    from amoskys.collectors.snmp.errors import SnmpPollError
    from amoskys.collectors.snmp.poller import fetch

    from snmp_replay import RecordedAgent, read_snmprec

    differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        served = []
        for case in cases():
            for path in polls(case):
                community = f"{case}-{path.stem}"
                (data / f"{community}.snmprec").write_bytes(path.read_bytes())
                served.append((case, path, community))
        sim = SnmpSim(data, [free_udp_port()]).start(served[0][2])
        client = SnmpClient()
        try:
            for number, (case, path, community) in enumerate(served):
                config = case_config(case)
                profiles = config.profiles_of(case_target(config))
                # a target (community index) per recording: the engine keeps the first community of a name
                name = f"sim{number}"
                target = SnmpTargetConfig(name=name, address="127.0.0.1", port=sim.port, community_env="C")
                session = session_for(
                    target, auth_data(target, {"C": community}), timeout_seconds=2, retries=1
                )
                agent = RecordedAgent()
                agent.load(read_snmprec(path))
                results = []
                for source in (client, agent):
                    try:
                        got = await fetch(
                            source,  # type: ignore[arg-type]
                            session,
                            profiles=profiles,
                            max_repetitions=config.max_repetitions,
                            clock=SystemClock(),
                        )
                        results.append((got.system, got.uptime_ticks, got.interfaces, got.host))
                    except SnmpPollError as err:
                        results.append(("error", err.reason, str(err)))
                same = results[0] == results[1]
                differ += not same
                print(f"{case}/{path.name}: {'same' if same else 'DIFFERENT'}")
                if not same:
                    print(f"  snmpsim:       {results[0]}\n  RecordedAgent: {results[1]}")
        finally:
            await client.aclose()
            sim.stop()
    return differ


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--expected", action="store_true", help="also rewrite every case's expected.jsonl")
    p.add_argument("--check-agent", action="store_true", help="compare RecordedAgent with snmpsim")
    args = p.parse_args(argv)
    for name in CASES:
        write_case(name)
    for name in cases():  # also cases recorded by hand (snmpsim-record-commands), not written here
        if args.expected:
            (CASES_DIR / name / "expected.jsonl").write_text(asyncio.run(run_case(name)))
        print(f"{name}: {len(polls(name))} polls" + (", expected.jsonl written" if args.expected else ""))
    if args.check_agent:
        return 1 if asyncio.run(check_agent()) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
