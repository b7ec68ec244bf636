"""Attack: a dashboard viewer reads secrets out of other users' command lines and becomes admin.

The exec history, the process table and every event are readable by the `viewer` role. An operator
who runs `curl -H "Authorization: Bearer <admin API token>" …` (or `mysql -pSECRET`, `sshpass -p
SECRET`, `redis-cli -a SECRET`, `docker login -p SECRET`, `curl -u user:SECRET`) on the appliance
would hand that secret to every viewer, unless command lines are redacted before they leave the
process collector. The viewer here reads every page and API answer that can show a command line (and
the event export), looks for the secrets and for anything shaped like an AMOSKYS API token, and tries
each candidate token against an admin-only endpoint.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support import RunningAppliance, amoskys, require_root, wait_for

pytestmark = [pytest.mark.e2e]

MASK = "********"
VIEWER_PASSWORD = "viewer-password-long-enough"
ADMIN_PASSWORD = "admin-password-long-enough"
#: What `amoskys.web.passwords.new_token()` makes: 32 random bytes, base64url without padding.
TOKEN_SHAPE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
#: Harmless stand-ins for the real tools: each waits for its stdin to close, so it is alive when the
#: collector reads its command line and when the viewer looks at the process table.
TOOLS = ("curl", "mysql", "sshpass", "redis-cli", "docker")


@dataclass
class Probe:
    """A command line carrying secrets, and exactly what a viewer may see of it."""

    argv: list[str]
    secrets: list[str]
    shown: list[str]

    @property
    def marker(self) -> str:
        return self.argv[-1]


def _secret() -> str:
    return "S3cr3t" + secrets.token_hex(8)


def _marker(i: int) -> str:
    return f"amoskys-redaction-probe-{i}-{secrets.token_hex(4)}"


def _long_lived_probes(bin_dir: Path, token: str) -> list[Probe]:
    """Command lines of processes that stay alive (stand-in tools named like the real ones)."""
    sh = "/bin/sh"  # a script runs as `<interpreter> <script path> <args>`
    tool = {name: str(bin_dir / name) for name in TOOLS}
    probes = []
    s = [_secret() for _ in range(7)]
    cases: list[tuple[list[str], list[str], list[str]]] = [
        (
            [
                tool["curl"],
                "-s",
                "-H",
                f"Authorization: Bearer {token}",
                "-u",
                f"admin:{s[0]}",
                "https://127.0.0.1:1/",
            ],
            [token, s[0]],
            [
                sh,
                tool["curl"],
                "-s",
                "-H",
                f"Authorization: Bearer {MASK}",
                "-u",
                f"admin:{MASK}",
                "https://127.0.0.1:1/",
            ],
        ),
        (
            [tool["mysql"], "-uroot", f"-p{s[1]}", "-h", "127.0.0.1", "appdb"],
            [s[1]],
            [sh, tool["mysql"], "-uroot", f"-p{MASK}", "-h", "127.0.0.1", "appdb"],
        ),
        (
            [tool["sshpass"], "-p", s[2], "ssh", "-p", "2222", "ops@127.0.0.1"],
            [s[2]],
            [sh, tool["sshpass"], "-p", MASK, "ssh", "-p", "2222", "ops@127.0.0.1"],
        ),
        (
            [tool["redis-cli"], "-h", "127.0.0.1", "-a", s[3], "ping"],
            [s[3]],
            [sh, tool["redis-cli"], "-h", "127.0.0.1", "-a", MASK, "ping"],
        ),
        (
            [tool["docker"], "login", "-u", "ops", "-p", s[4], "registry.example"],
            [s[4]],
            [sh, tool["docker"], "login", "-u", "ops", "-p", MASK, "registry.example"],
        ),
        (
            [sh, "-c", f'read _; curl -H "X-Api-Key: {s[5]}" -b "session={s[6]}" https://127.0.0.1:1/', "x"],
            [s[5], s[6]],
            [sh, "-c", f'read _; curl -H "X-Api-Key: {MASK}" -b "session={MASK}" https://127.0.0.1:1/', "x"],
        ),
        # the admin's token alone, as a positional argument ($1 of a shell script)
        ([sh, "-c", "read _", "probe", token], [token], [sh, "-c", "read _", "probe", MASK]),
    ]
    for i, (argv, hidden, shown) in enumerate(cases):
        marker = _marker(i)
        probes.append(Probe([*argv, marker], hidden, [*shown, marker]))
    return probes


def _short_lived_probes(token: str) -> list[Probe]:
    """Command lines of processes that end at once: only the proc connector sees them."""
    s = _secret()
    cases = [
        (
            ["/bin/true", "-H", f"Authorization: Bearer {token}", "https://127.0.0.1:1/"],
            [token],
            ["/bin/true", "-H", f"Authorization: Bearer {MASK}", "https://127.0.0.1:1/"],
        ),
        # as `sudo mysql -p…` runs it: the tool's own name starts its options
        (
            ["/bin/true", "mysql", "-uroot", f"-p{s}", "appdb"],
            [s],
            ["/bin/true", "mysql", "-uroot", f"-p{MASK}", "appdb"],
        ),
    ]
    return [
        Probe([*argv, m], hidden, [*shown, m])
        for (argv, hidden, shown), m in zip(cases, (_marker(100), _marker(101)), strict=True)
    ]


def _start(appliance_factory, tmp_path: Path, mode: str) -> RunningAppliance:  # type: ignore[no-untyped-def]
    config = tmp_path / "amoskys.toml"
    config.write_text(
        "".join(f"[collectors.{name}]\nenabled = false\n" for name in ("discovery", "flow", "snmp", "host"))
        + f'[collectors.process]\nmode = "{mode}"\npoll_interval_seconds = 0.2\n'
    )
    app = appliance_factory("--config", str(config))
    app.wait_ready(timeout=60)
    data = str(app.data_dir)
    for name, role, password in (("boss", "admin", ADMIN_PASSWORD), ("watcher", "viewer", VIEWER_PASSWORD)):
        amoskys(
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--data-dir",
            data,
            input=password + "\n",
        )
    return app


def _login(app: RunningAppliance, name: str, password: str) -> httpx.Client:
    web = httpx.Client(base_url=app.web_url, timeout=60)
    r = web.post("/api/v1/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    return web


def _admin_token(app: RunningAppliance) -> str:
    """A real API token of the admin (what `curl -H "Authorization: Bearer …"` would carry)."""
    with closing(_login(app, "boss", ADMIN_PASSWORD)) as admin:
        csrf = admin.get("/api/v1/me").json()["csrf_token"]
        r = admin.post("/api/v1/tokens", json={"days": 1}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        token = str(r.json()["token"])
    assert TOKEN_SHAPE.fullmatch(token), token
    assert (
        httpx.get(app.web_url + "/api/v1/users", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    return token


def _mode(viewer: httpx.Client) -> str:
    items = viewer.get("/api/v1/collectors").json()["items"]
    return str(next(c for c in items if c["name"] == "process").get("mode", ""))


def _events(viewer: httpx.Client, path: str = "/api/v1/events", **params: str) -> Iterator[dict]:
    """Every event a viewer can page through at `path`, newest first."""
    query: dict[str, str] = {"limit": "500", **params}
    while True:
        page = viewer.get(path, params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        yield from body["items"]
        if body["next_before"] is None:
            return
        query["before"] = str(body["next_before"])


def _argvs(events: list[dict]) -> list[list[str]]:
    return [e["body"].get("argv", []) for e in events if e["kind"] == "process" and e["body"]]


def _newest_seq(viewer: httpx.Client) -> int:
    items = viewer.get("/api/v1/events", params={"limit": "1"}).json()["items"]
    return int(items[0]["store_seq"]) if items else 0


def _seen(viewer: httpx.Client, probe: Probe, floor: int) -> dict | None:
    """An exec event stored after `floor` whose command line holds the probe's marker."""
    for e in _events(viewer, "/api/v1/processes/execs"):
        if e["store_seq"] <= floor:
            return None
        if e["body"].get("kind") == "EXEC" and probe.marker in e["body"].get("argv", []):
            return e
    return None


def _seen_soon(viewer: httpx.Client, probe: Probe, floor: int, within: float) -> dict | None:
    """_seen() within `within` seconds, else None (the caller runs the process again)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = _seen(viewer, probe, floor)
        if found:
            return found
        time.sleep(0.05)
    return None


def _spawn(probes: list[Probe]) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(p.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in probes
    ]


def _attack(app: RunningAppliance, tmp_path: Path, *, short_lived: bool) -> None:
    token = _admin_token(app)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in TOOLS:
        (bin_dir / name).write_text("#!/bin/sh\nread _line\n")
        (bin_dir / name).chmod(0o755)
    long_lived = _long_lived_probes(bin_dir, token)
    short = _short_lived_probes(token) if short_lived else []
    viewer = _login(app, "watcher", VIEWER_PASSWORD)
    floor = _newest_seq(viewer)
    procs = _spawn(long_lived)
    try:
        for probe in long_lived:
            wait_for(lambda p=probe: _seen(viewer, p, floor), timeout=60, what=f"the exec of {probe.marker}")
        for probe in short:
            # a process that ends within a millisecond may be gone before /proc is read: run it again
            def run_and_look(p: Probe = probe) -> dict | None:
                subprocess.run(p.argv, check=True)
                return _seen_soon(viewer, p, floor, within=2.0)

            wait_for(run_and_look, timeout=90, interval=0.05, what=f"an enriched exec of {probe.marker}")
        shown, events = _viewer_texts(app, viewer, long_lived + short)
    finally:
        for proc in procs:
            proc.communicate(input=b"\n", timeout=30)
        viewer.close()

    # the attack: every token-shaped string the viewer saw, tried against an admin-only endpoint
    everything = "\n".join(shown.values())
    became_admin = [
        where
        for candidate in set(TOKEN_SHAPE.findall(everything))
        if httpx.get(
            app.web_url + "/api/v1/users", headers={"Authorization": f"Bearer {candidate}"}
        ).status_code
        == 200
        for where, text in shown.items()
        if candidate in text
    ]
    assert became_admin == [], f"a viewer became admin with a token read from {became_admin[:3]}"
    for probe in long_lived + short:
        for secret in probe.secrets:
            leaks = [where for where, text in shown.items() if secret in text]
            assert leaks == [], f"{probe.marker}: a secret of {probe.argv} is shown in {leaks[:3]}"
    # the rest of each command line is still there, exactly
    argvs = [e["body"].get("argv", []) for e in events if e["kind"] == "process" and e["body"]]
    for probe in long_lived + short:
        assert probe.shown in argvs, (
            f"{probe.marker}: expected the viewer to see {probe.shown}, got "
            f"{[a for a in argvs if probe.marker in a]}"
        )


def _viewer_texts(
    app: RunningAppliance, viewer: httpx.Client, probes: list[Probe]
) -> tuple[dict[str, str], list[dict]]:
    """Everything a viewer can read that may hold a command line, by where it was read; and every
    stored event as the API shows it."""
    texts: dict[str, str] = {}
    events = list(_events(viewer))
    texts["api events (all kinds, every page)"] = json.dumps(events)
    texts["api execs (every page)"] = json.dumps(list(_events(viewer, "/api/v1/processes/execs")))
    texts["api process table"] = viewer.get("/api/v1/processes").text
    for path in ("/processes", "/events?kind=process", "/events"):
        r = viewer.get(path)
        assert r.status_code == 200, (path, r.status_code)
        texts[f"page {path}"] = r.text
    for probe in probes:
        q = {"q": probe.marker}
        texts[f"api process table ?q={probe.marker}"] = viewer.get("/api/v1/processes", params=q).text
        texts[f"page /processes?q={probe.marker}"] = viewer.get("/processes", params=q).text
        for e in events:
            if e["kind"] == "process" and probe.marker in (e["body"] or {}).get("argv", []):
                seq = e["store_seq"]
                texts[f"api /events/{seq}"] = viewer.get(f"/api/v1/events/{seq}").text
                texts[f"page /events/{seq}"] = viewer.get(f"/events/{seq}").text
    texts["amoskys events export"] = amoskys("events", "export", "--data-dir", str(app.data_dir)).stdout
    return texts, events


@pytest.mark.needs_root
def test_a_viewer_finds_no_secret_in_exec_history_with_the_proc_connector(
    appliance_factory, tmp_path: Path
) -> None:
    require_root("the netlink proc connector needs root")
    app = _start(appliance_factory, tmp_path, "netlink")
    with closing(_login(app, "watcher", VIEWER_PASSWORD)) as viewer:
        assert wait_for(lambda: _mode(viewer) == "netlink" or None, timeout=30, what="netlink mode")
    _attack(app, tmp_path, short_lived=True)


def test_a_viewer_finds_no_secret_in_the_process_table_in_polling_mode(
    appliance_factory, tmp_path: Path
) -> None:
    app = _start(appliance_factory, tmp_path, "polling")
    _attack(app, tmp_path, short_lived=False)
