"""`amoskys certs init|renew`: the appliance's CA, bus server certificate and identity."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from amoskys.cli.common import add_common, credentials

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    certs = sub.add_parser("certs", help="certificates and identities").add_subparsers(
        dest="certs_command", required=True, metavar="ACTION"
    )
    p = certs.add_parser("init", help="create the CA, bus server certificate and identity if missing")
    add_common(p)
    p.set_defaults(func=cmd_certs_init)
    p = certs.add_parser(
        "renew", help="re-issue the bus server certificate (SANs from [bus]); no restart needed"
    )
    add_common(p)
    p.set_defaults(func=cmd_certs_renew)


def cmd_certs_init(args: argparse.Namespace) -> int:
    _, where, creds = credentials(args, create=True)
    if creds.created:
        print(f"created in {where.pki}: {', '.join(creds.created)}")
    else:
        print(f"certificates and identity already present in {where.pki}")
    return 0


def cmd_certs_renew(args: argparse.Namespace) -> int:
    from amoskys.pki.issuance import cert_not_after, renew_server_cert

    config, _, creds = credentials(args)
    renew_server_cert(
        creds, dns_names=config.bus.server_dns_names, ip_addresses=config.bus.server_ip_addresses
    )
    print(
        f"renewed {creds.server_cert} (valid until {cert_not_after(creds.server_cert):%Y-%m-%d}); "
        "a running appliance serves it from the next connection"
    )
    return 0
