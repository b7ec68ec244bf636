"""`amoskys snmp poll HOST[:PORT]`: poll one device once and print what the collector would publish.

Found by the collector registry (``COMMAND``, ``add_arguments``, ``run``); also runnable alone: ``python -m amoskys.collectors.snmp.cli HOST ...``. Secrets come from a file or
an environment variable (``--community C`` works too, but shows in this machine's process list).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence

from google.protobuf.json_format import MessageToDict

from amoskys.collectors.snmp.config import SnmpTargetConfig
from amoskys.errors import AmoskysError, ConfigError
from amoskys.proto import events_pb2

COMMAND = "snmp"
HELP = "SNMP tools"

_LITERAL_ENV = "AMOSKYS_SNMP_CLI_SECRET"  # how --community reaches the secret reader (never exported)


def parse_host_port(text: str, default_port: int = 161) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address → (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?", text)
    if m:
        host, port = m.group(1), m.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host or (port is not None and not port.isdigit()):
        raise ConfigError(f"expected HOST[:PORT] (IPv6 as [ADDR]:PORT), got {text!r}", path="HOST")
    number = int(port) if port else default_port
    if not 1 <= number <= 65535:
        raise ConfigError(f"port must be 1..65535, got {number} in {text!r}", path="HOST")
    return host, number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`amoskys snmp poll ...`."""
    actions = parser.add_subparsers(dest="snmp_command", required=True, metavar="ACTION")
    add_poll_arguments(
        actions.add_parser("poll", help="poll one SNMP agent once and print what the collector would publish")
    )


def run(args: argparse.Namespace) -> int:
    return cmd_snmp_poll(args)


def add_poll_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `amoskys snmp poll`."""
    p.add_argument(
        "host", metavar="HOST[:PORT]", help="the agent (port 161 unless given; IPv6 as [ADDR]:PORT)"
    )
    v2c = p.add_mutually_exclusive_group()
    v2c.add_argument("--community-file", metavar="F", help="v2c: file whose first line is the community")
    v2c.add_argument("--community-env", metavar="VAR", help="v2c: environment variable holding the community")
    v2c.add_argument(
        "--community",
        metavar="C",
        help="v2c: the community itself (visible in the process list: prefer a file)",
    )
    p.add_argument("--user", metavar="U", help="v3: USM user name (then --auth-key-file, --priv-key-file)")
    p.add_argument("--auth-key-file", metavar="F", help="v3: file whose first line is the auth pass phrase")
    p.add_argument(
        "--auth-key-env", metavar="VAR", help="v3: environment variable holding the auth pass phrase"
    )
    p.add_argument("--priv-key-file", metavar="F", help="v3: file whose first line is the priv pass phrase")
    p.add_argument(
        "--priv-key-env", metavar="VAR", help="v3: environment variable holding the priv pass phrase"
    )
    p.add_argument(
        "--auth-protocol", default="sha256", choices=["sha1", "sha224", "sha256", "sha384", "sha512"]
    )
    p.add_argument(
        "--priv-protocol", default="aes128", choices=["aes128", "aes192", "aes256", "aes192c", "aes256c"]
    )
    p.add_argument("--context", default="", metavar="NAME", help="v3 context name")
    p.add_argument(
        "--profile",
        action="append",
        choices=["interfaces", "host_resources", "fdb"],
        help="what to poll besides the system group (repeatable; default: interfaces)",
    )
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="seconds per request (2.0)")
    p.add_argument("--retries", type=int, default=1, metavar="N", help="resends per request (1)")
    p.add_argument(
        "--max-repetitions", type=int, default=25, metavar="N", help="GETBULK max-repetitions (25)"
    )
    p.add_argument("--format", choices=["json", "table"], default="table", help="output format (table)")


def target_from_args(args: argparse.Namespace) -> tuple[SnmpTargetConfig, dict[str, str]]:
    """The target the arguments describe, and the environment its secrets are read from."""
    host, port = parse_host_port(args.host)
    environ = dict(os.environ)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-._") or "target"
    common = {"name": name[:63], "address": host, "port": port, "context_name": args.context}
    try:
        if args.user:
            if args.community or args.community_file or args.community_env:
                raise ConfigError("--user (v3) and a community (v2c) exclude each other", path="--user")
            has_priv = bool(args.priv_key_file or args.priv_key_env)
            return SnmpTargetConfig(
                **common,
                version="v3",
                user=args.user,
                security_level="auth_priv" if has_priv else "auth_no_priv",
                auth_protocol=args.auth_protocol,
                auth_key_file=args.auth_key_file or "",
                auth_key_env=args.auth_key_env or "",
                priv_protocol=args.priv_protocol,
                priv_key_file=args.priv_key_file or "",
                priv_key_env=args.priv_key_env or "",
            ), environ
        if args.community is not None:
            environ[_LITERAL_ENV] = args.community
            return SnmpTargetConfig(**common, community_env=_LITERAL_ENV), environ
        if not (args.community_file or args.community_env):
            raise ConfigError(
                "give --community-file F (or --community-env VAR, --community C) for v2c, "
                "or --user U --auth-key-file F [--priv-key-file F] for v3",
                path="--community-file",
            )
        return SnmpTargetConfig(
            **common, community_file=args.community_file or "", community_env=args.community_env or ""
        ), environ
    except ValueError as err:  # a target check in SnmpTargetConfig.__post_init__
        raise ConfigError(str(err).replace("`", "")) from None


async def poll_once(
    target: SnmpTargetConfig,
    environ: Mapping[str, str],
    *,
    profiles: Sequence[str],
    timeout_seconds: float,
    retries: int,
    max_repetitions: int,
) -> events_pb2.SnmpSample:
    """One poll of `target`; raises SnmpPollError or SecretError."""
    from amoskys.collectors.clock import SystemClock
    from amoskys.collectors.snmp.client import SnmpClient, auth_data, session_for
    from amoskys.collectors.snmp.poller import fetch
    from amoskys.collectors.snmp.rows import assemble

    auth = auth_data(target, environ)
    client = SnmpClient()
    try:
        session = session_for(target, auth, timeout_seconds=timeout_seconds, retries=retries)
        started = time.monotonic()
        data = await fetch(
            client, session, profiles=profiles, max_repetitions=max_repetitions, clock=SystemClock()
        )
        return assemble(
            target.name, target.endpoint, data, None, poll_seconds=round(time.monotonic() - started, 6)
        ).sample
    finally:
        client.close()


def mac(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def to_json(sample: events_pb2.SnmpSample) -> str:
    data = MessageToDict(sample, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    for iface, message in zip(data.get("interfaces", []), sample.interfaces, strict=True):
        iface["phys_address"] = mac(message.phys_address)
    for entry, fdb_message in zip(data.get("fdb", []), sample.fdb, strict=True):
        entry["mac"] = mac(fdb_message.mac)
    return json.dumps(data, indent=2, sort_keys=False)


def to_table(sample: events_pb2.SnmpSample) -> str:
    s = sample.system
    lines = [
        f"target    {sample.address} ({sample.poll_seconds:.3f} s)",
        f"sysName   {s.name}",
        f"sysDescr  {s.descr}",
        f"objectID  {s.object_id}",
        f"uptime    {s.uptime_ticks / 100:.0f} s",
        f"contact   {s.contact}",
        f"location  {s.location}",
    ]
    if sample.interfaces:
        head = (
            "idx",
            "name",
            "descr",
            "type",
            "speed",
            "adm/op",
            "in_octets",
            "out_octets",
            "err in/out",
            "HC",
        )
        rows = [head]
        for i in sample.interfaces:
            rows.append(
                (
                    str(i.if_index),
                    i.name,
                    i.descr,
                    str(i.type),
                    _speed(i.speed_bps),
                    f"{i.admin_status}/{i.oper_status}",
                    str(i.in_octets),
                    str(i.out_octets),
                    f"{i.in_errors}/{i.out_errors}",
                    "yes" if i.hc_counters else "no",
                )
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines.append("")
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if sample.cpu_load_percent:
        lines += ["", "cpu load  " + " ".join(f"{v}%" for v in sample.cpu_load_percent)]
    for st in sample.storage:
        lines.append(f"storage   {st.descr}: {st.used_bytes} of {st.size_bytes} bytes")
    return "\n".join(lines)


def _speed(bps: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if bps >= size:
            return f"{bps / size:g}{unit}"
    return str(bps)


def cmd_snmp_poll(args: argparse.Namespace) -> int:
    """The handler of `amoskys snmp poll`: prints the sample; errors raise AmoskysError (exit 2)."""
    target, environ = target_from_args(args)
    sample = asyncio.run(
        poll_once(
            target,
            environ,
            profiles=args.profile or ["interfaces"],
            timeout_seconds=args.timeout,
            retries=args.retries,
            max_repetitions=args.max_repetitions,
        )
    )
    print(to_json(sample) if args.format == "json" else to_table(sample))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amoskys snmp poll", description=__doc__.splitlines()[0])
    add_poll_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_snmp_poll(args)
    except AmoskysError as err:
        print(f"amoskys: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
