"""The blocking-call detector for the test suite (STYLE.md, "The loop"), and its one allow-list.

While a test runs, ``blockbuster`` replaces the blocking calls of the standard library (time.sleep,
file and socket I/O, os.stat and friends, sqlite3, lock waits) with checks: a call made on the thread
that runs an event loop, from product code (a frame under ``amoskys/`` in its stack), raises
``BlockingError``. Calls from the tests' own code, and calls in worker threads (asyncio.to_thread,
executors, aiosqlite's thread), are not checked.

Each BlockingError is also appended to ``findings``, which conftest.py checks at every test's
teardown: a finding that product code swallowed (the supervisor's ``except Exception``) still fails
the test, by name. In ``amoskys run`` children (tests/child_site/sitecustomize.py) the same detector
logs each finding to stderr ("Blocking call to ...") and lets the call run; there ``cmd_run`` is at
the bottom of every loop stack, so every blocking call on the loop counts, libraries' callbacks too.

Every exception is listed in ALLOWED below, with its reason; nowhere else. An entry names the
checked calls (keys of ``BlockBuster.functions``, or ``*`` for all of them), the file (a path suffix)
and the functions in it whose stack may make that call.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blockbuster.blockbuster as bb
from blockbuster import BlockBuster, BlockingError


@dataclass(frozen=True)
class Allowed:
    """Calls `calls` (``*``: any) made below `functions` of the file ending in `file`, with the reason."""

    calls: frozenset[str]
    file: str
    functions: frozenset[str]
    reason: str


def allow(calls: str, file: str, functions: str, reason: str) -> Allowed:
    """An entry; `calls` and `functions` are space-separated names."""
    return Allowed(frozenset(calls.split()), file, frozenset(functions.split()), reason)


ALLOWED: tuple[Allowed, ...] = (
    # -- libraries, at whatever point of the loop the garbage collector frees their last object
    allow(
        "threading.Lock.acquire threading.Lock.acquire_lock",
        "threading.py",
        "_wait_for_tstate_lock",
        "grpc.aio shuts its engine down when its last object is freed (RPCState.__dealloc__ → "
        "shutdown_grpc_aio → PollerCompletionQueue.shutdown → Thread.join): a finalizer that runs in "
        "whichever frame the collector interrupts, so it is attributed to product code it has nothing "
        "to do with; refusing it leaks grpc's poller socket into the next test. Product code joins no "
        "thread on the loop (executors are shut down with wait=False)",
    ),
    # -- product code, on the loop by design
    allow(
        "io.BufferedReader.read os.listdir",
        "amoskys/metrics.py",
        "__init__",
        "Metrics() registers prometheus_client's ProcessCollector, which reads /proc/self/stat and lists "
        "/proc/self/fd once for its metric names: built once per appliance, before ready; /proc is "
        "kernel memory, no disk",
    ),
    allow(
        "*",
        "amoskys/collectors/snmp/client.py",
        "__init__",
        "SnmpClient() must be built on the loop's thread (pysnmp's engine binds to it) and loads pysnmp's "
        "own MIB modules from site-packages: once per collector start, like an import",
    ),
    allow(
        "io.TextIOWrapper.read",
        "amoskys/collectors/capabilities.py",
        "effective_capabilities",
        "a collector's self_check reads /proc/self/status (kernel memory, no disk) once per start",
    ),
    allow(
        "os.listdir",
        "amoskys/fd_budget.py",
        "at_start",
        "the appliance plans its descriptor budget once per start, before ready, counting /proc/self/fd "
        "(kernel memory, no disk)",
    ),
    # -- product functions that product code runs off the loop, and tests call directly
    allow(
        "*",
        "amoskys/metrics.py",
        "render",
        "the web app renders /metrics in asyncio.to_thread (web/app.py); tests call render() directly",
    ),
    allow(
        "*",
        "tests/bus/bus_harness.py",
        "make_env enroll",
        "the test harness makes the appliance's PKI inline; the appliance does it in asyncio.to_thread "
        "(app.py, Appliance.start)",
    ),
    allow(
        "*",
        "tests/collectors/flow/test_flow_capture.py",
        "read_flows",
        "the test runs the synchronous `amoskys flows read` command for its expected flows",
    ),
    allow(
        "*",
        "tests/store/test_origin.py",
        "_v1_database",
        "the test writes an old-schema database file with sqlite3 directly",
    ),
    allow(
        "*",
        "tests/bus/test_gate.py",
        "_stray",
        "the test enrols a stray agent inline",
    ),
    allow(
        "*",
        "tests/test_loadgen_unit.py",
        "_bundle",
        "the test makes a PKI inline",
    ),
    allow(
        "*",
        "tests/web/web_harness.py",
        "admin_password",
        "the test harness reads the admin password file it wrote",
    ),
    allow(
        "*",
        "tests/bus/test_service.py",
        "test_expired_certificate_gets_unavailable test_unknown_identity_is_denied_at_call_start "
        "test_renewed_server_certificate_is_served_without_restart",
        "the tests issue certificates inline",
    ),
    allow(
        "*",
        "tests/web/web_harness.py",
        "make_web",
        "the test harness makes the appliance's PKI inline; the appliance does it in asyncio.to_thread",
    ),
    allow(
        "*",
        "tests/bus/test_service.py",
        "test_certificate_from_another_ca_gets_unavailable",
        "the test makes a second CA inline",
    ),
    allow(
        "*",
        "tests/collectors/flow/test_flow_capture.py",
        "frames_in test_raw_ip_interface_meters_like_the_file",
        "the test counts the frames of a pcap file",
    ),
    allow(
        "*",
        "tests/collectors/discovery/discovery_replay.py",
        "replay",
        "the replay loads the OUI registry inline; the collector loads it in asyncio.to_thread",
    ),
    allow(
        "*",
        "tests/store/test_integrity.py",
        "<lambda>",
        "the test polls the high-water side file; the store reads it in asyncio.to_thread",
    ),
    allow(
        "*",
        "tests/store/test_synthetic.py",
        "test_migration_to_v3_keeps_identities_and_allows_the_loadgen_role",
        "the test reads the schema version of a closed database file with sqlite3",
    ),
)


#: Every BlockingError raised since the test started, as "Blocking call to X from file:line in f":
#: the conftest fixture fails the test at teardown when it is not empty, so a finding that product
#: code swallowed (the supervisor's ``except Exception`` shows it only as restarts) still fails.
findings: list[str] = []

_PACKAGE = str(Path(__file__).resolve().parent.parent / "amoskys")


#: Path prefixes cut from a finding's frames: the repository, site-packages, the standard library.
_ROOTS = (
    str(Path(_PACKAGE).parent) + "/",
    *(p + "/" for p in sys.path if p.endswith("-packages")),
    sysconfig.get_paths()["stdlib"] + "/",
)


def _where(frame: Any) -> str:
    name = frame.f_code.co_filename
    for root in _ROOTS:
        if name.startswith(root):
            name = name[len(root) :]
            break
    return f"{name}:{frame.f_lineno} in {frame.f_code.co_name}"


def _describe(err: BlockingError) -> str:
    """The error's text, the frame that made the call and the next two product frames below it."""
    caller = sys._getframe(2)  # the caller of the checked function
    text = f"{err} from {_where(caller)}"
    product: list[str] = []
    frame = caller.f_back
    while frame is not None and len(product) < 2:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            product.append(_where(frame))
        frame = frame.f_back
    return f"{text} (under {' < '.join(product)})" if product else text


def _observing(report: Callable[[str], None], *, raise_it: bool) -> Callable[..., Any]:
    """blockbuster's wrapper factory, wrapped: each BlockingError is reported, then raised (the test
    suite) or let through (a child process: the blocking call runs, the finding is only logged)."""
    wrap_blocking = bb._wrap_blocking

    def wrap(modules: Any, excluded: Any, func: Callable[..., Any], *rest: Any) -> Callable[..., Any]:
        checker = wrap_blocking(modules, excluded, func, *rest)

        def observed(*args: Any, **kwargs: Any) -> Any:
            try:
                return checker(*args, **kwargs)
            except BlockingError as err:  # raised by the check, before `func` ran
                bb._skip.value = True  # no checks (and findings) inside the reporting, nor the call
                try:
                    report(_describe(err))
                    if raise_it:
                        raise
                    return func(*args, **kwargs)
                finally:
                    bb._skip.value = False

        return observed

    return wrap


def detector() -> BlockBuster:
    """A BlockBuster (not yet active) that checks product code, with ALLOWED applied."""
    # by path, not by name: importing amoskys here (a child's sitecustomize runs before `python -m`
    # puts its folder on sys.path) could bind the wrong package
    buster = BlockBuster(bb._ModulePaths([_PACKAGE]))
    for entry in ALLOWED:
        names = buster.functions if "*" in entry.calls else entry.calls
        for name in names:
            function = buster.functions[name]
            function.can_block_in(entry.file, entry.functions)
    return buster


def activate(report: Callable[[str], None], *, raise_it: bool) -> BlockBuster:
    """The detector, active; every finding goes to `report` first (see `_observing`)."""
    buster = detector()
    wrap_blocking = bb._wrap_blocking
    bb._wrap_blocking = _observing(report, raise_it=raise_it)  # read by activate() only
    try:
        buster.activate()
    finally:
        bb._wrap_blocking = wrap_blocking
    return buster


@contextmanager
def no_blocking_on_the_loop() -> Iterator[BlockBuster]:
    """Fail any blocking call made on a running event loop from product code, for the `with` block;
    each one is also appended to `findings`."""
    buster = activate(findings.append, raise_it=True)
    try:
        yield buster
    finally:
        buster.deactivate()


def log_to_stderr(finding: str) -> None:
    """A child process's report: one line on stderr, which the appliance fixture looks for."""
    sys.stderr.write(finding.replace("\n", " ") + "\n")
    sys.stderr.flush()
