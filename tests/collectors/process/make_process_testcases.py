"""Write the process collector's testcases and, on request, their expected output.

    .venv/bin/python tests/collectors/process/make_process_testcases.py             # rewrite the inputs
    .venv/bin/python tests/collectors/process/make_process_testcases.py --expected  # ... and expected.jsonl
    sudo .venv/bin/python tests/collectors/process/make_process_testcases.py --capture  # re-record kernel_capture

Each ``testcases/<case>/`` holds ``input.pcap`` (proc connector datagrams, link type NETLINK), the
``proc/<pid>/`` files the collector reads for each exec, an optional ``config.toml`` and
``expected.jsonl`` (see process_replay.py). Inputs of the made-up cases are encoded here in the
kernel's layout (linux/cn_proc.h; before anything is written, the encoder must rebuild every
datagram of kernel_capture byte for byte). ``kernel_capture`` is recorded from this machine's kernel with
``--capture`` (root: it subscribes to the proc connector and runs a few commands), and left alone
otherwise. expected.jsonl is written only with ``--expected``: review it in the diff;
test_process_testcases.py compares, it never rewrites.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent.parent)]  # process_replay, process_harness, support

from amoskys.collectors.process import parse  # noqa: E402

from process_replay import CASES_DIR, T0_NS, pcap_bytes, read_pcap, run_case  # noqa: E402

NS = 1_000_000_000
CLK_TCK = 100
SIGCHLD = 17
PF_KTHREAD = 0x00200000
PF_FORKNOEXEC = 0x00000040
PF_RANDOMIZE = 0x00400000
CAPTURED = "kernel_capture"


# ---------------------------------------------------------------- the kernel's layout
def message(what: int, cpu: int, seq: int, ts_ns: int, union: bytes, *, ack: int = 0) -> bytes:
    """One netlink message holding one ``struct proc_event`` (a 40-byte event, the union zero-padded);
    the kernel copies the connector's sequence number into the netlink header."""
    event = struct.pack("=IIQ", what, cpu, ts_ns) + union.ljust(24, b"\0")
    cn = struct.pack("=IIIIHH", parse.CN_IDX_PROC, parse.CN_VAL_PROC, seq, ack, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), parse.NLMSG_DONE, 0, seq, 0) + cn


def fork(cpu: int, seq: int, ts: int, parent: int, child: int, *, child_tgid: int = 0) -> bytes:
    union = struct.pack("=iiii", parent, parent, child, child_tgid or child)
    return message(parse.PROC_EVENT_FORK, cpu, seq, ts, union)


def exec_(cpu: int, seq: int, ts: int, pid: int) -> bytes:
    return message(parse.PROC_EVENT_EXEC, cpu, seq, ts, struct.pack("=ii", pid, pid))


def exit_(cpu: int, seq: int, ts: int, pid: int, status: int, parent: int, *, tgid: int = 0) -> bytes:
    union = struct.pack("=iiIIii", pid, tgid or pid, status, SIGCHLD, parent, parent)
    return message(parse.PROC_EVENT_EXIT, cpu, seq, ts, union)


def comm(cpu: int, seq: int, ts: int, pid: int, name: bytes) -> bytes:
    """A PROC_EVENT_COMM (prctl(PR_SET_NAME)): not used by the collector, but it takes a number."""
    return message(0x00000200, cpu, seq, ts, struct.pack("=ii", pid, pid) + name.ljust(16, b"\0"))


def netlink_error(errno: int) -> bytes:
    return struct.pack("=IHHIIi", 20, parse.NLMSG_ERROR, 0, 0, 0, -errno)


def check_encoder() -> None:
    """The encoder must write the kernel's bytes exactly: rebuild every datagram kernel_capture
    recorded from its decoded fields (fork, exec and exit of single-threaded processes)."""
    path = CASES_DIR / CAPTURED / "input.pcap"
    if not path.exists():
        print(f"warning: no {path}: the encoder is not checked against the kernel", file=sys.stderr)
        return
    for _, datagram in read_pcap(path):
        [record] = parse.parse_datagram(datagram)
        if isinstance(record, parse.Fork):
            rebuilt = fork(record.cpu, record.seq, record.ts_ns, record.parent_tgid, record.child_pid)
        elif isinstance(record, parse.Exec):
            rebuilt = exec_(record.cpu, record.seq, record.ts_ns, record.pid)
        elif isinstance(record, parse.Exit):
            rebuilt = exit_(
                record.cpu, record.seq, record.ts_ns, record.pid, record.status, record.parent_tgid
            )
        else:
            continue
        if rebuilt != datagram:
            raise SystemExit(f"the encoder differs from the kernel:\n{rebuilt.hex()}\n{datagram.hex()}")


# ---------------------------------------------------------------- /proc/<pid>
@dataclass
class ProcDir:
    """What /proc/<pid> holds for the collector (None: that file cannot be read, e.g. ptrace-denied exe)."""

    argv: list[str]
    exe: str | None
    ppid: int
    start_ticks: int
    uid: int = 0
    cgroup: str = "0::/user.slice/user-0.slice/session-1.scope"
    flags: int = PF_RANDOMIZE
    state: str = "S"
    comm: str = ""  # the kernel's name of the process: the executable's file name unless set
    cwd: str | None = "/root"  # the working directory (None: the link cannot be read)

    @property
    def name(self) -> str:
        return (self.comm or Path(self.exe or "").name)[:15]


def stat_line(pid: int, name: str, d: ProcDir) -> str:
    """A /proc/<pid>/stat line with all 52 fields, as Linux 6.x writes it."""
    fields = [d.state, d.ppid, pid, pid, 0, -1, d.flags, 120, 0, 0, 0, 1, 0, 0, 0, 20, 0, 1, 0]
    fields += [d.start_ticks, 9_830_400, 812, 18446744073709551615] + [0] * 29
    return f"{pid} ({name}) " + " ".join(map(str, fields[:50])) + "\n"


def status_text(pid: int, name: str, d: ProcDir) -> str:
    ids = "\t".join([str(d.uid)] * 4)
    return (
        f"Name:\t{name}\nUmask:\t0022\nState:\t{d.state} (sleeping)\nTgid:\t{pid}\nNgid:\t0\n"
        f"Pid:\t{pid}\nPPid:\t{d.ppid}\nTracerPid:\t0\nUid:\t{ids}\nGid:\t{ids}\nFDSize:\t64\n"
        f"Groups:\t\nThreads:\t1\n"
    )


def write_proc(folder: Path, procs: dict[int, ProcDir]) -> None:
    root = folder / "proc"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for pid, d in procs.items():
        p = root / str(pid)
        p.mkdir()
        name = d.name
        p.joinpath("cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in d.argv))
        p.joinpath("stat").write_text(stat_line(pid, name, d))
        p.joinpath("status").write_text(status_text(pid, name, d))
        p.joinpath("cgroup").write_text(d.cgroup + "\n")
        if d.exe is not None:
            os.symlink(d.exe, p / "exe")
        if d.cwd is not None:
            os.symlink(d.cwd, p / "cwd")


# ---------------------------------------------------------------- made-up cases
Case = tuple[list[tuple[float, bytes]], dict[int, ProcDir], str]


def t(seconds: float) -> int:
    """CLOCK_MONOTONIC ns of a kernel event `seconds` after the 100th second of uptime."""
    return round((100 + seconds) * NS)


def ticks(seconds: float) -> int:
    return round((100 + seconds) * CLK_TCK)


def case_fork_exec_exit() -> Case:
    """A login shell runs curl (its URL credentials and --token masked; it exits 6), a subshell that
    never execs (its exit names the shell's program), `sleep` killed by SIGKILL, a root process in a
    Docker container and one as nobody. A thread of curl starts and ends: no event."""
    container = "0::/system.slice/docker-" + "4f" * 32 + ".scope"
    procs = {
        500: ProcDir(["-bash"], "/usr/bin/bash", 1, ticks(0)),
        501: ProcDir(
            ["curl", "--token=s3cr3t", "https://admin:hunter2@example.org/api"],
            "/usr/bin/curl",
            500,
            ticks(1),
        ),
        504: ProcDir(["sleep", "100"], "/usr/bin/sleep", 500, ticks(3)),
        505: ProcDir(["nginx", "-g", "daemon off;"], "/usr/sbin/nginx", 500, ticks(4), cgroup=container),
        506: ProcDir(
            ["/usr/bin/python3", "-m", "http.server"], "/usr/bin/python3.11", 505, ticks(5), uid=65534
        ),
    }
    events = [
        (0.0, fork(0, 10, t(0.000), 1, 500)),
        (0.0, exec_(0, 11, t(0.001), 500)),
        (1.0, fork(0, 12, t(1.000), 500, 501)),
        (1.0, exec_(1, 40, t(1.002), 501)),
        (1.0, fork(1, 41, t(1.010), 501, 502, child_tgid=501)),  # a thread of curl
        (2.0, exit_(1, 42, t(1.500), 502, 0, 501, tgid=501)),  # ... which ends: not the process
        (2.0, exit_(1, 43, t(1.600), 501, 6 << 8, 500)),
        (2.0, fork(0, 13, t(2.000), 500, 503)),  # a subshell
        (2.0, exit_(0, 14, t(2.250), 503, 0, 500)),
        (3.0, fork(0, 15, t(3.000), 500, 504)),
        (3.0, exec_(0, 16, t(3.001), 504)),
        (4.0, fork(1, 44, t(4.000), 500, 505)),
        (4.0, exec_(1, 45, t(4.002), 505)),
        (5.0, fork(1, 46, t(5.000), 505, 506)),
        (5.0, exec_(1, 47, t(5.003), 506)),
        (6.0, exit_(0, 17, t(6.000), 504, signal.SIGKILL, 500)),
        (6.0, exit_(1, 48, t(6.500), 506, 0, 505)),
        (7.0, exit_(0, 18, t(7.000), 500, 0, 1)),
    ]
    return events, procs, ""


def case_short_lived() -> Case:
    """Processes /proc could not fully tell: 700 was gone before the read (pid, ppid from the fork,
    start time from the fork); 701 was exiting (empty cmdline) and its exe link was not readable
    (ptrace-denied); 702 exits without ever having been seen (everything unknown)."""
    procs = {
        701: ProcDir([], None, 600, ticks(1), state="Z", comm="backup.sh", cwd=None),
    }
    events = [
        (0.0, fork(0, 200, t(0.000), 600, 700)),
        (0.0, exec_(0, 201, t(0.0004), 700)),
        (0.0, exit_(0, 202, t(0.0009), 700, 1 << 8, 600)),
        (1.0, fork(1, 300, t(1.000), 600, 701)),
        (1.0, exec_(1, 301, t(1.001), 701)),
        (1.0, exit_(1, 302, t(1.004), 701, 0, 600)),
        (2.0, exit_(0, 203, t(2.000), 702, (0x80 | signal.SIGSEGV), 1)),  # dumped core
    ]
    return events, procs, ""


def case_sequence_gap() -> Case:
    """Gaps in the per-CPU numbers are lost messages: 4 on CPU 0 and 1 on CPU 1 between two wake-ups,
    one LossReport (sequence_gap) for the wake-up where they show. Events the collector does not use
    (a comm change), a netlink error and another connector's message take no output; the comm event
    still takes its number."""
    procs = {
        800: ProcDir(["make", "-j4"], "/usr/bin/make", 1, ticks(0)),
        801: ProcDir(["cc", "-c", "x.c"], "/usr/bin/x86_64-linux-gnu-gcc-12", 800, ticks(2)),
    }
    other = bytearray(exec_(0, 1, t(0), 999))
    struct.pack_into("=I", other, 16, 7)  # connector index 7: another connector's message
    events = [
        (0.0, fork(0, 100, t(0.000), 1, 800)),
        (0.0, exec_(0, 101, t(0.001), 800)),
        (0.0, comm(1, 50, t(0.002), 800, b"make-worker")),
        (0.0, netlink_error(105)),
        (0.0, bytes(other)),
        (2.0, fork(0, 106, t(2.000), 800, 801)),  # 102..105 lost
        (2.0, exec_(1, 52, t(2.001), 801)),  # 51 lost
        (3.0, exit_(1, 53, t(3.000), 801, 0, 800)),
    ]
    return events, procs, ""


def case_malformed() -> Case:
    """Datagrams that cannot be right are counted (with the reason) and skipped; those around them
    still count. A cut datagram whose message was lost leaves a gap in the numbers: a LossReport.
    Fewer bytes than a netlink header are nothing to parse. Two messages in one datagram are read."""
    procs = {
        900: ProcDir(["sshd", "-D"], "/usr/sbin/sshd", 1, ticks(0)),
        901: ProcDir(["sshd: root [priv]"], "/usr/sbin/sshd", 900, ticks(1)),
    }
    whole = exit_(0, 502, t(1.5), 950, 0, 1)
    cut_event = bytearray(whole[:60])  # lengths consistent, but the exit's union is cut short
    struct.pack_into("=I", cut_event, 0, 60)
    struct.pack_into("=H", cut_event, 32, 24)
    short_cn = struct.pack("=IHHII", 26, parse.NLMSG_DONE, 0, 0, 0) + b"\x01\0\0\0\x01\0\0\0\0\0"
    two = exec_(0, 504, t(2.0), 901) + exit_(0, 505, t(2.5), 901, 255 << 8, 900)
    events = [
        (0.0, exec_(0, 500, t(0.0), 900)),
        (1.0, exec_(0, 501, t(1.0), 955)[:40]),  # the length claims 76 bytes; 40 came
        (1.0, bytes(cut_event)),
        (1.0, short_cn),
        (1.0, b"\x07\x00\x00"),
        (2.0, two),
    ]
    return events, procs, ""


def case_redaction() -> Case:
    """Site-specific secret option names (config.toml): `--pin` and `--passphrase` values are masked,
    `--token` is not (no longer in the patterns); URL credentials, HTTP authorization headers and a
    tool's secret options (`mysql -p…`, after the tool's name) always are."""
    procs = {
        400: ProcDir(
            [
                "unlock",
                "--pin",
                "1234",
                "--passphrase=correct-horse",
                "--token=visible",
                "ftp://u:pw@h/",
                "Authorization: Bearer abc123",
                "mysql",
                "-phunter2",
            ],
            "/usr/local/bin/unlock",
            1,
            ticks(0),
        ),
    }
    events = [(0.0, fork(0, 10, t(0.0), 1, 400)), (0.0, exec_(0, 11, t(0.001), 400))]
    config = '[collectors.process]\nredact_patterns = ["pin", "pass(word|phrase)?"]\n'
    return events, procs, config


CASES: dict[str, Callable[[], Case]] = {
    "fork_exec_exit": case_fork_exec_exit,
    "short_lived": case_short_lived,
    "sequence_gap": case_sequence_gap,
    "malformed": case_malformed,
    "redaction": case_redaction,
}


def write_case(name: str) -> None:
    events, procs, config = CASES[name]()
    folder = CASES_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    records = [(T0_NS + round(at * NS), datagram) for at, datagram in events]
    (folder / "input.pcap").write_bytes(pcap_bytes(records))
    write_proc(folder, procs)
    config_path = folder / "config.toml"
    if config:
        config_path.write_text(config)
    elif config_path.exists():
        config_path.unlink()


# ---------------------------------------------------------------- kernel_capture
PROC_FILES = ("cmdline", "stat", "status", "cgroup")


def snapshot(pid: int, into: Path) -> None:
    """Copy what the collector reads of /proc/<pid> (nothing when it has gone already)."""
    target = into / str(pid)
    try:
        files = {name: Path(f"/proc/{pid}/{name}").read_bytes() for name in PROC_FILES}
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    os.symlink(exe, target / "exe")
    os.symlink(cwd, target / "cwd")


def capture_once(proc_dir: Path) -> tuple[list[tuple[int, bytes]], bool]:
    """Record the proc connector while running `sh -c 'sleep 0.3; exit 3'` and `sleep 30` (ended by
    SIGTERM). Returns (records, whether only our own processes appeared)."""
    from amoskys.collectors.process.netlink import ProcConnector

    connector = ProcConnector(4 << 20)
    connector.open()
    try:
        time.sleep(0.1)
        connector.receive(10_000)  # the subscription's ack and whatever ran meanwhile
        ours = {os.getpid()}
        records: list[tuple[int, bytes]] = []
        started = time.monotonic_ns()
        shell = subprocess.Popen(["/bin/sh", "-c", "sleep 0.3; exit 3"])
        sleeper = subprocess.Popen(["/bin/sleep", "30"])
        killed = False
        quiet_since = None
        only_ours = True
        while True:
            ready, _, _ = select.select([connector.fileno()], [], [], 0.05)
            if ready:
                datagrams, overrun, _ = connector.receive(1000)
                if overrun:
                    raise SystemExit("the capture overran its socket buffer; run it again")
                now = T0_NS + (time.monotonic_ns() - started)
                for datagram in datagrams:
                    for record in parse.parse_datagram(datagram):
                        mine = True  # acks and netlink errors
                        if isinstance(record, parse.Fork):
                            mine = record.parent_tgid in ours
                            if mine:
                                ours.add(record.child_tgid)
                        elif isinstance(record, parse.Exec):
                            mine = record.tgid in ours
                            if mine:  # read it now, as the collector's reading thread does
                                snapshot(record.tgid, proc_dir)
                        elif isinstance(record, parse.Exit):
                            mine = record.tgid in ours
                        elif isinstance(record, parse.Other):
                            mine = False  # whose it is would need decoding: capture again
                        only_ours = only_ours and mine
                    records.append((now, datagram))
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            if not killed and time.monotonic_ns() - started > 500_000_000:
                sleeper.send_signal(signal.SIGTERM)
                killed = True
            if killed and shell.poll() is not None and sleeper.poll() is not None:
                if quiet_since is not None and time.monotonic() - quiet_since > 0.3:
                    break
        return records, only_ours
    finally:
        connector.close()


def capture() -> None:
    if os.geteuid() != 0:
        raise SystemExit("--capture subscribes to the proc connector: run it as root")
    folder = CASES_DIR / CAPTURED
    for attempt in range(1, 6):
        shutil.rmtree(folder / "proc", ignore_errors=True)
        (folder / "proc").mkdir(parents=True)
        records, only_ours = capture_once(folder / "proc")
        if only_ours:
            (folder / "input.pcap").write_bytes(pcap_bytes(records))
            print(
                f"{CAPTURED}: {len(records)} datagrams, /proc of {len(list((folder / 'proc').iterdir()))} execs"
            )
            return
        print(f"attempt {attempt}: other processes ran meanwhile; capturing again", file=sys.stderr)
    raise SystemExit("the machine is never quiet enough for a clean capture")


# ---------------------------------------------------------------- main
def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--expected", action="store_true", help="also rewrite every case's expected.jsonl")
    p.add_argument("--capture", action="store_true", help=f"re-record {CAPTURED} from this kernel (root)")
    args = p.parse_args(argv)
    if args.capture:
        capture()
    check_encoder()
    for name in CASES:
        write_case(name)
    for name in sorted(p.name for p in CASES_DIR.iterdir() if (p / "input.pcap").is_file()):
        count = len(read_pcap(CASES_DIR / name / "input.pcap"))
        if args.expected:
            (CASES_DIR / name / "expected.jsonl").write_text(asyncio.run(run_case(name)))
        print(f"{name}: {count} datagrams" + (", expected.jsonl written" if args.expected else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
