"""Shared by the tests of amoskys.pki: the appliance's PKI in tmp_path, and what to read from it."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from amoskys.pki.issuance import ensure_appliance_pki
from amoskys.pki.layout import ApplianceCredentials

TD = "site1.example"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ensure(pki_dir: Path, **overrides: object) -> ApplianceCredentials:
    kwargs: dict[str, object] = {
        "name": "appliance-1",
        "trust_domain": TD,
        "dns_names": ["localhost", "bus.site1.example"],
        "ip_addresses": ["127.0.0.1"],
    }
    kwargs.update(overrides)
    return ensure_appliance_pki(pki_dir, **kwargs)  # type: ignore[arg-type]


def all_files(creds: ApplianceCredentials) -> list[Path]:
    return [
        creds.ca_cert,
        creds.ca_key,
        creds.server_cert,
        creds.server_key,
        creds.identity_key,
        creds.identity_cert,
        creds.identity_cert_key,
    ]


def sans_of(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
