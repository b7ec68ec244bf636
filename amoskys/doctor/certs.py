"""Checks of the certificates a run will load: readable, valid now, and how long until they expire."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from amoskys.doctor.findings import Finding
from amoskys.errors import PkiError
from amoskys.pki.issuance import load_cert
from amoskys.pki.layout import CA_CERT, CLIENT_CERT, CLIENT_KEY, SERVER_CERT, SERVER_KEY, ApplianceCredentials

#: A certificate expiring sooner than this is a warning.
WARN_BEFORE = timedelta(days=30)

_RENEW = {
    "server": "amoskys certs renew (no restart needed)",
    "client": "move pki/client.crt and pki/client.key aside and restart: `amoskys run` issues a new one",
    "ca": "the CA cannot be renewed in place: make a new one (move pki/ aside, `amoskys certs init`) and "
    "enrol every agent again",
    "agent": "the agent renews its certificate itself while it can reach the appliance; else enrol it "
    "again (amoskys agents enroll NAME, or a token)",
}


def appliance_pki(pki_dir: Path, now: datetime | None = None) -> list[Finding]:
    """The appliance's CA, bus server and client certificates (all made by `run` when missing)."""
    creds = ApplianceCredentials.in_dir(pki_dir)
    if not creds.ca_cert.exists():
        return [
            Finding(
                "pki", "ok", f"no CA in {pki_dir} yet: `amoskys run` (or `amoskys certs init`) creates it"
            )
        ]
    found = [
        certificate("pki:ca", creds.ca_cert, creds.ca_key, _RENEW["ca"], now),
        certificate("pki:server", creds.server_cert, creds.server_key, _RENEW["server"], now),
    ]
    if creds.identity_cert.exists():
        found.append(
            certificate("pki:client", creds.identity_cert, creds.identity_cert_key, _RENEW["client"], now)
        )
    return found


def identity_bundle(bundle: Path, now: datetime | None = None) -> list[Finding]:
    """An enrolment bundle (an agent's, or a relay's): its client certificate and the CA it trusts."""
    if not bundle.is_dir():
        return [
            Finding(
                "pki:identity",
                "fail",
                f"identity bundle {bundle} does not exist",
                "make one with `amoskys agent enroll --token T --bus HOST:PORT`, or copy the directory made by "
                "`amoskys agents enroll NAME --out DIR` on the appliance",
            )
        ]
    return [
        certificate("pki:identity", bundle / CLIENT_CERT, bundle / CLIENT_KEY, _RENEW["agent"], now),
        certificate("pki:identity-ca", bundle / CA_CERT, None, _RENEW["agent"], now),
    ]


def web_tls(pki_dir: Path, now: datetime | None = None) -> list[Finding]:
    """`[web] tls = "on"` serves the bus server certificate: the same file as pki:server."""
    cert, key = pki_dir / SERVER_CERT, pki_dir / SERVER_KEY
    if not cert.exists():
        return []
    return [certificate("pki:web", cert, key, _RENEW["server"], now)]


def certificate(
    subject: str, cert_path: Path, key_path: Path | None, renew: str, now: datetime | None = None
) -> Finding:
    """One certificate: present and parseable, its key readable, valid now, and its expiry."""
    now = now or datetime.now(UTC)
    if not cert_path.exists():
        return Finding(subject, "fail", f"{cert_path} is missing", renew)
    try:
        cert = load_cert(cert_path)
    except PkiError as err:
        return Finding(subject, "fail", f"{cert_path}: {err}", renew)
    if key_path is not None and not os.access(key_path, os.R_OK):
        why = "is missing" if not key_path.exists() else f"is not readable by uid {os.geteuid()}"
        return Finding(subject, "fail", f"{key_path} {why}", f"sudo chown {os.geteuid()} {key_path}")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return Finding(
            subject,
            "fail",
            f"{cert_path.name} is valid only from {start:%Y-%m-%d %H:%M} UTC: this box's clock is behind",
            "set the time and keep it synchronised: sudo timedatectl set-ntp true",
        )
    left = end - now
    if left <= timedelta(0):
        return Finding(subject, "fail", f"{cert_path.name} expired on {end:%Y-%m-%d}", renew)
    if left < WARN_BEFORE:
        return Finding(
            subject, "warn", f"{cert_path.name} expires on {end:%Y-%m-%d} ({left.days} days)", renew
        )
    return Finding(subject, "ok", f"{cert_path.name} valid until {end:%Y-%m-%d} ({left.days} days)")
