"""Command-line parsing and the sub-commands: `amoskys run`, `check-config`, `certs init`, ..."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from amoskys import __version__
from amoskys.errors import AmoskysError, ConfigError, DataDirError


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _load_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from amoskys import config as cfg

    loaded = cfg.load(args.config)
    return cfg.apply_overrides(
        loaded,
        os.environ,
        data_dir=getattr(args, "data_dir", None),
        log_level=getattr(args, "log_level", None),
        web_listen=getattr(args, "web_listen", None),
        bus_listen=getattr(args, "bus_listen", None),
    )


def _data_dir(args: argparse.Namespace, config, mode: str = "appliance") -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    from amoskys.paths import resolve_data_dir

    return resolve_data_dir(getattr(args, "data_dir", None), config.appliance.data_dir, os.environ, mode=mode)  # type: ignore[arg-type]


# ---------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from amoskys import logs
    from amoskys.app import Appliance, RunOptions

    config = _load_config(args)
    logs.setup(config.appliance.log_level, config.appliance.log_format)
    data_dir, reason = _data_dir(args, config)
    appliance = Appliance(
        RunOptions(config=config, data_dir=data_dir, data_dir_reason=reason, env=dict(os.environ))
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(appliance.run())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from amoskys import config as cfg

    cfg.load(args.file)
    print(f"{args.file}: ok")
    return 0


def cmd_config_sample(args: argparse.Namespace) -> int:
    from amoskys import sample_config

    sys.stdout.write(sample_config.assemble())
    return 0


def cmd_certs_init(args: argparse.Namespace) -> int:
    _, layout, creds = _credentials(args, create=True)
    if creds.created:
        print(f"created in {layout.pki}: {', '.join(creds.created)}")
    else:
        print(f"certificates and identity already present in {layout.pki}")
    return 0


def cmd_loadgen(args: argparse.Namespace) -> int:
    from amoskys import loadgen

    if args.unary and args.batch != 1:
        raise ConfigError("loadgen: --unary sends one event per call: use --batch 1", path="--batch")
    identity = loadgen.load_identity(Path(args.identity))
    bus = args.bus or identity.bus_address
    if not bus:
        raise ConfigError("loadgen: no --bus given and the bundle names no bus address", path="--bus")
    try:
        acked = open(args.acked_file, "a", encoding="ascii") if args.acked_file else None
    except OSError as err:
        raise ConfigError(
            f"loadgen: --acked-file {args.acked_file}: {err.strerror}", path="--acked-file"
        ) from err
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(
                loadgen.run(
                    identity,
                    bus,
                    events=args.events,
                    batch=args.batch,
                    rate=args.rate,
                    window=args.window,
                    acked_file=acked,
                    unary=args.unary,
                    server_name=args.server_name,
                    progress=sys.stderr if not args.quiet and sys.stderr.isatty() else None,
                    connect_timeout=args.connect_timeout,
                    bundle_dir=Path(args.identity),
                    losses=args.losses,
                )
            )
    finally:
        if acked is not None:
            acked.close()
    print(loadgen.format_summary(result, args.json))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from amoskys.status_cmd import cmd_status as status

    data_dir, _ = _data_dir(args, _load_config(args))
    return status(data_dir, as_json=args.json)


def cmd_collectors(args: argparse.Namespace) -> int:
    from amoskys.status_cmd import cmd_collectors as collectors

    data_dir, _ = _data_dir(args, _load_config(args))
    return collectors(data_dir, args.action, args.name)


def cmd_events_export(args: argparse.Namespace) -> int:
    from amoskys.errors import StoreError
    from amoskys.paths import Layout
    from amoskys.store.export import KINDS, export_events

    if args.kind is not None and args.kind not in KINDS:
        raise ConfigError(
            f"--kind: unknown kind {args.kind!r}; known kinds: {', '.join(KINDS)}",
            path="--kind",
            value=args.kind,
        )
    data_dir, _ = _data_dir(args, _load_config(args))
    db = Layout(data_dir).db
    try:
        present = db.exists()
    except OSError as err:  # an unreadable data dir
        raise StoreError(f"store {db}: cannot read: {err.strerror}") from err
    if not present:
        raise DataDirError(
            f"no event store at {db} (has the appliance run with this --data-dir?)", path=str(db)
        )
    since_ns = _parse_since(args.since) if args.since else None
    try:
        summary = asyncio.run(
            export_events(
                db,
                sys.stdout,
                kind=args.kind,
                source=args.source,
                since_ns=since_ns,
                limit=args.limit,
                format=args.format,
            )
        )
    except OSError as err:
        raise StoreError(f"store {db}: cannot read: {err.strerror or err}") from err
    skipped = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.skipped.items()))
    note = f" (skipped, no ECS mapping: {skipped})" if skipped else ""
    print(f"exported {summary.written} events{note}", file=sys.stderr)
    return 0


def _parse_since(text: str) -> int:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since: expected an ISO 8601 time like 2026-11-27T12:00:00Z, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000_000)


def _layout(args: argparse.Namespace, *, create: bool = False):  # type: ignore[no-untyped-def]
    """The loaded config and the data dir's layout. Only `run` and `certs init` create a data dir
    (`create`); for every other command a missing one is an error naming it (a typo in --data-dir
    must not make a new appliance)."""
    from amoskys.paths import Layout

    config = _load_config(args)
    data_dir, reason = _data_dir(args, config)
    layout = Layout(data_dir)
    if create:
        layout.ensure()
    elif not data_dir.is_dir():
        raise DataDirError(
            f"{data_dir}: no such data dir (chosen by {reason}); `amoskys run` or `amoskys certs init` "
            "creates one — or pass the appliance's --data-dir",
            path=str(data_dir),
        )
    return config, layout


def _with_state(config, layout, action, *, create: bool = True):  # type: ignore[no-untyped-def]
    """Run `await action(state)` on the data dir's appliance state (the appliance may be running);
    without `create`, a data dir that has no store yet is an error (read-only commands create nothing)."""
    from amoskys.state_access import appliance_state

    if not create and not layout.db.exists():
        raise DataDirError(
            f"no event store at {layout.db} (has the appliance run with this --data-dir?)",
            path=str(layout.db),
        )

    async def run():  # type: ignore[no-untyped-def]
        async with appliance_state(layout.db, config.store) as state:
            return await action(state)

    return asyncio.run(run())


def _credentials(args: argparse.Namespace, *, create: bool = False):  # type: ignore[no-untyped-def]
    """The appliance's PKI in the data dir; only `certs init` (`create`) makes a missing one."""
    from amoskys.app import appliance_credentials
    from amoskys.pki import ApplianceCredentials

    config, layout = _layout(args, create=create)
    if not create and not ApplianceCredentials.in_dir(layout.pki).ca_cert.exists():
        raise DataDirError(
            f"{layout.pki}: this data dir has no appliance CA; `amoskys certs init` (or `amoskys run`) "
            "creates it",
            path=str(layout.pki),
        )
    return config, layout, appliance_credentials(config, layout)


def cmd_agents_enroll(args: argparse.Namespace) -> int:
    from amoskys import pki

    config, layout, creds = _credentials(args)
    bus_address = _enrol_bus_address(args.bus_address, config, layout, creds)
    bundle = pki.enroll_agent(
        creds,
        name=args.name,
        role=args.role,
        trust_domain=config.bus.trust_domain,
        bus_address=bus_address,
        out_dir=Path(args.out),
    )

    _with_state(
        config,
        layout,
        lambda state: state.enroll_identity(
            bundle.name, bundle.role, bundle.public_key_raw, str(bundle.cert_serial)
        ),
    )
    agents_dir = layout.pki / "agents"
    agents_dir.mkdir(mode=0o700, exist_ok=True)
    (agents_dir / f"{bundle.name}.crt").write_bytes((Path(args.out) / "client.crt").read_bytes())
    print(
        f"enrolled {bundle.name!r} (role {bundle.role}, key {bundle.key_id}, certificate valid until "
        f"{bundle.not_after:%Y-%m-%d}); bundle in {args.out} — copy it to the agent, keep it secret"
    )
    return 0


def _enrol_bus_address(flag: str | None, config, layout, creds) -> str:  # type: ignore[no-untyped-def]
    """The bus address an agent's bundle names: --bus-address, else `[bus] advertise_address`, else the
    running appliance's bus address (run.json), else `[bus] listen` — the last two only when they name
    a specific host and port. Its host must be one the bus server certificate names."""
    from amoskys import pki
    from amoskys.config import format_listen, is_wildcard_host, parse_listen

    if flag:
        try:
            host, port = parse_listen(flag)
        except ValueError as err:
            raise ConfigError(f"--bus-address: {err}", path="--bus-address", value=flag) from None
        if is_wildcard_host(host) or port == 0:
            raise ConfigError(
                f"--bus-address: expected the HOST:PORT agents dial (a specific host, a port other than 0), "
                f"got {flag!r}",
                path="--bus-address",
                value=flag,
            )
        source = "--bus-address"
    elif config.bus.advertise_address:
        host, port = parse_listen(config.bus.advertise_address)
        source = "[bus] advertise_address"
    else:
        running = _running_bus_address(layout.run_json)
        host, port = running or parse_listen(config.bus.listen)
        source = f"the running appliance's bus ({layout.run_json})" if running else "[bus] listen"
        if is_wildcard_host(host) or port == 0:
            raise ConfigError(
                f"agents enroll: {source} is {format_listen(host, port)}, which agents cannot dial; "
                "pass --bus-address HOST:PORT or set [bus] advertise_address",
                path="$.bus.advertise_address",
            )
    accepted, names = pki.cert_accepts_host(creds.server_cert, host)
    if not accepted:
        raise ConfigError(
            f"agents enroll: {source} names host {host!r}, which the bus server certificate "
            f"{creds.server_cert} does not (it names {names}); add it to [bus] server_dns_names or "
            "server_ip_addresses and run `amoskys certs renew`, or dial one of those",
            path=source,
            value=host,
        )
    return format_listen(host, port)


def _running_bus_address(run_json: Path) -> tuple[str, int] | None:
    """The bus host and port run.json names, when the appliance that wrote it is still running."""
    import json

    try:
        info = json.loads(run_json.read_text())
        pid, bus = info["pid"], info["bus"]
        host, port = bus["host"], bus["port"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(pid, int) and pid > 0 and isinstance(host, str) and host and isinstance(port, int)):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # stale: left by an appliance that did not stop cleanly
    except PermissionError:
        pass  # alive, owned by another user
    return host, port


def cmd_agents_list(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from amoskys import pki

    config, layout = _layout(args)
    rows = []
    for ident in _with_state(config, layout, lambda state: state.list_identities(), create=False):
        cert = layout.pki / "agents" / f"{ident.name}.crt"
        expires = pki.cert_not_after(cert).isoformat() if cert.exists() else ""
        rows.append(
            {
                "name": ident.name,
                "role": ident.role,
                "key_id": pki.key_id_of_raw(ident.public_key),
                "enrolled": datetime.fromtimestamp(ident.enrolled_ns / 1e9, UTC).isoformat(),
                "revoked": datetime.fromtimestamp(ident.revoked_ns / 1e9, UTC).isoformat()
                if ident.revoked_ns
                else "",
                "cert_expires": expires,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no agents enrolled (amoskys agents enroll NAME --out DIR)")
    else:
        print(f"{'NAME':24} {'ROLE':7} {'KEY':16} {'CERT EXPIRES':26} REVOKED")
        for r in rows:
            print(
                f"{r['name']:24} {r['role']:7} {r['key_id']:16} {r['cert_expires'][:19]:26} {r['revoked'][:19] or '-'}"
            )
    return 0


def cmd_agents_revoke(args: argparse.Namespace) -> int:
    """Record the revocation in the store, then have the running appliance apply it: it returns only
    once the bus refuses the agent and has ended the agent's calls in progress."""
    from amoskys.control import NotRunningError, request
    from amoskys.errors import ControlError

    config, layout = _layout(args)
    name = args.name

    async def record(state):  # type: ignore[no-untyped-def]
        if await state.revoke_identity(name):
            return "revoked"
        return "already" if await state.get_identity(name) is not None else "unknown"

    outcome = _with_state(config, layout, record, create=False)
    if outcome == "unknown":
        print(f"amoskys: error: no enrolled agent named {name!r}", file=sys.stderr)
        return 1
    done = "revoked" if outcome == "revoked" else "already revoked"
    try:
        reply = request(layout.control_socket, {"cmd": "revoke", "name": name})
    except NotRunningError:
        print(
            f"{done} {name!r}; no appliance is running with data dir {layout.root}: "
            "it refuses the agent from its next start"
        )
        return 0 if outcome == "revoked" else 1
    except ControlError as err:
        print(
            f"amoskys: error: {name!r} is {done} in the store, but the running appliance did not confirm "
            f"it ({err}); it reads the store again within a second: run this command again to confirm",
            file=sys.stderr,
        )
        return 2
    if not reply.get("ok"):
        print(
            f"amoskys: error: {name!r} is {done} in the store, but the running appliance refused to apply "
            f"it: {reply.get('error', 'no reason given')}",
            file=sys.stderr,
        )
        return 2
    print(
        f"{done} {name!r}: the running appliance confirmed it refuses the agent "
        f"(ended {reply.get('calls_ended', 0)} of its calls in progress)"
    )
    return 0 if outcome == "revoked" else 1


def cmd_certs_renew(args: argparse.Namespace) -> int:
    from amoskys import pki

    config, _, creds = _credentials(args)
    pki.renew_server_cert(
        creds, dns_names=config.bus.server_dns_names, ip_addresses=config.bus.server_ip_addresses
    )
    print(
        f"renewed {creds.server_cert} (valid until {pki.cert_not_after(creds.server_cert):%Y-%m-%d}); "
        "a running appliance serves it from the next connection"
    )
    return 0


def _read_new_password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password (12 characters at least): ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("the two passwords differ", path="password")
    from amoskys.web.auth import MAX_PASSWORD_CHARS

    if len(password) < 12:
        raise ConfigError("the password needs 12 characters at least", path="password")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ConfigError(
            f"the password may have {MAX_PASSWORD_CHARS} characters at most (logins refuse longer ones)",
            path="password",
        )
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from amoskys.web.passwords import hash_password_sync

    config, layout = _layout(args)

    async def taken(state) -> bool:  # type: ignore[no-untyped-def]
        return await state.get_user(args.name) is not None

    if not args.replace and _with_state(config, layout, taken):
        from amoskys.store.state import StateConflictError

        raise StateConflictError(
            f"user {args.name!r} already exists (--replace sets a new password and role)",
            kind="user",
            key=args.name,
        )
    encoded = hash_password_sync(_read_new_password(args))

    async def add(state) -> None:  # type: ignore[no-untyped-def]
        if args.replace and await state.get_user(args.name):
            await state.set_password(args.name, encoded)
            await state.set_role(args.name, args.role)
            await state.revoke_user_sessions(args.name)
        else:
            await state.create_user(args.name, encoded, args.role)

    _with_state(config, layout, add)
    print(f"user {args.name!r} ({args.role}) {'updated' if args.replace else 'added'}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    config, layout = _layout(args)
    for u in _with_state(config, layout, lambda state: state.list_users(), create=False):
        print(
            f"{u.name:24} {u.role:7} created {datetime.fromtimestamp(u.created_ns / 1e9, UTC):%Y-%m-%d %H:%M}"
        )
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:

    config, layout = _layout(args)

    async def remove(state) -> bool:  # type: ignore[no-untyped-def]
        await state.revoke_user_sessions(args.name)
        return bool(await state.delete_user(args.name))

    if not _with_state(config, layout, remove, create=False):
        print(f"amoskys: error: no user named {args.name!r}", file=sys.stderr)
        return 1
    print(f"removed {args.name!r} and ended their sessions")
    return 0


# ---------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: embedded defaults)")
    p.add_argument(
        "--data-dir", metavar="DIR", help="data directory (overrides AMOSKYS_DATA_DIR and the config)"
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < 86_400 * 365:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amoskys", description="AMOSKYS edge security sensor")
    parser.add_argument("--version", action="version", version=f"amoskys {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the appliance in the foreground")
    _add_common(p)
    p.add_argument(
        "--web-listen", metavar="HOST:PORT", help="dashboard and /metrics address (port 0: any free port)"
    )
    p.add_argument("--bus-listen", metavar="HOST:PORT", help="EventBus gRPC address (port 0: any free port)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("config", help="configuration helpers").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    p.add_parser("sample", help="print the sample amoskys.toml (every key, commented)").set_defaults(
        func=cmd_config_sample
    )

    p = sub.add_parser("loadgen", help="publish synthetic events of every kind to a bus, and measure")
    p.add_argument(
        "--identity",
        required=True,
        metavar="DIR",
        help="enrolment bundle of a loadgen identity (amoskys agents enroll NAME --role loadgen --out DIR)",
    )
    p.add_argument("--bus", metavar="HOST:PORT", help="bus address (default: the bundle's)")
    p.add_argument(
        "--events", type=_positive_int, default=10_000, metavar="N", help="events to publish (10000)"
    )
    p.add_argument(
        "--batch", type=_positive_int, default=100, metavar="B", help="events per signed batch (100)"
    )
    p.add_argument(
        "--rate", type=float, default=0.0, metavar="R", help="events/s to offer (0: as fast as acked)"
    )
    p.add_argument(
        "--window", type=_positive_int, default=4, metavar="W", help="batches in flight at once (4)"
    )
    p.add_argument("--acked-file", metavar="F", help="append each OK-acked event_id to F")
    p.add_argument("--unary", action="store_true", help="one event per Publish call (needs --batch 1)")
    p.add_argument(
        "--server-name", metavar="NAME", help="TLS name to expect when dialing an address not in the SANs"
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up when the bus is not reached in time, saying why in one line (10)",
    )
    p.add_argument("--losses", action="store_true", help="also publish synthetic LossReports")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--quiet", action="store_true", help="no progress line on stderr (shown only on a terminal)"
    )
    p.set_defaults(func=cmd_loadgen)

    p = sub.add_parser("status", help="show the running appliance and its collectors")
    _add_common(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("collectors", help="start, stop or restart a collector of the running appliance")
    p.add_argument("action", choices=["start", "stop", "restart"])
    p.add_argument("name", metavar="NAME", help="collector name (see `amoskys status`)")
    _add_common(p)
    p.set_defaults(func=cmd_collectors)

    events = sub.add_parser("events", help="read the event store").add_subparsers(
        dest="events_command", required=True, metavar="ACTION"
    )
    p = events.add_parser("export", help="write stored events as JSON Lines (also while the appliance runs)")
    _add_common(p)
    p.add_argument(
        "--kind",
        help="only this body kind (process, host, flow, snmp, device, loss, alert, audit, heartbeat)",
    )
    p.add_argument("--source", help="only events of this source")
    p.add_argument("--since", metavar="ISO8601", help="only events observed at or after this time")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="at most N events")
    p.add_argument(
        "--format",
        choices=["jsonl", "ecs"],
        default="jsonl",
        help="jsonl: every event, fields as in amoskys/store/README.md; ecs: flows, processes, devices "
        "and alerts as Elastic Common Schema 8.11 documents (other kinds are skipped and counted)",
    )
    p.set_defaults(func=cmd_events_export)

    agents = sub.add_parser("agents", help="enrol, list and revoke remote agents").add_subparsers(
        dest="agents_command", required=True, metavar="ACTION"
    )
    p = agents.add_parser("enroll", help="issue a client certificate and signing key for an agent")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--role",
        choices=["agent", "relay", "loadgen"],
        default="agent",
        help="relay: may forward others' events; loadgen: for `amoskys loadgen`, its events are marked synthetic",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the bundle (must not exist)")
    p.add_argument(
        "--bus-address",
        metavar="HOST:PORT",
        help="address the agent dials (default: [bus] advertise_address, else the running appliance's "
        "bus, else [bus] listen when not a wildcard); its host must be in the bus server certificate",
    )
    _add_common(p)
    p.set_defaults(func=cmd_agents_enroll)
    p = agents.add_parser("list", help="enrolled agents, their keys, certificate expiry and revocation")
    p.add_argument("--json", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_agents_list)
    p = agents.add_parser(
        "revoke", help="revoke an agent; returns once the running appliance refuses it and ended its calls"
    )
    p.add_argument("name", metavar="NAME")
    _add_common(p)
    p.set_defaults(func=cmd_agents_revoke)

    _add_collector_commands(sub)

    users = sub.add_parser("users", help="dashboard users").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    p = users.add_parser("add", help="add a dashboard user (password from a prompt, or stdin)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=["admin", "viewer"], default="viewer")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--replace", action="store_true", help="set a new password and role for an existing user")
    _add_common(p)
    p.set_defaults(func=cmd_users_add)
    p = users.add_parser("list", help="dashboard users and their roles")
    _add_common(p)
    p.set_defaults(func=cmd_users_list)
    p = users.add_parser("remove", help="remove a user and end their sessions")
    p.add_argument("name", metavar="NAME")
    _add_common(p)
    p.set_defaults(func=cmd_users_remove)

    certs = sub.add_parser("certs", help="certificates and identities").add_subparsers(
        dest="certs_command", required=True, metavar="ACTION"
    )
    p = certs.add_parser("init", help="create the CA, bus server certificate and identity if missing")
    _add_common(p)
    p.set_defaults(func=cmd_certs_init)
    p = certs.add_parser(
        "renew", help="re-issue the bus server certificate (SANs from [bus]); no restart needed"
    )
    _add_common(p)
    p.set_defaults(func=cmd_certs_renew)
    return parser


def _add_collector_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The sub-commands collectors bring in their folder's cli.py (`flows read`, `snmp poll`, ...)."""
    from amoskys.collectors import registry

    for spec in registry.discover().values():
        module = spec.cli()
        if module is None:
            continue
        p = sub.add_parser(getattr(module, "COMMAND", spec.name), help=getattr(module, "HELP", None))
        module.add_arguments(p)
        p.set_defaults(func=module.run)


def quiet_grpc_core(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Keep gRPC's C core out of our log: it prints to stderr directly (past structlog), and its fork
    handlers log on every subprocess. Set before grpc is imported; an operator's own values win
    (``GRPC_VERBOSITY=INFO amoskys run`` shows the core's TLS handshake failures again)."""
    environ.setdefault("GRPC_VERBOSITY", "ERROR")
    environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_grpc_core()
    args = build_parser().parse_args(argv)
    if args.func is not cmd_run:
        from amoskys import logs

        logs.setup("warning")  # commands print results on stdout; only problems go to stderr
    try:
        return int(args.func(args))
    except AmoskysError as err:
        print(f"amoskys: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
