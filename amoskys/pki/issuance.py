"""Issuing certificates: the appliance's private CA, the bus server certificate and client
certificates, and creating, checking and renewing the appliance's own set (``ensure_appliance_pki``).

TLS certificates use ECDSA P-256 with SHA-256 because that is what every TLS stack (grpc's BoringSSL
included) accepts for both server and client authentication; Ed25519 is used only for batch signatures
(``amoskys.pki.signatures``). A client certificate carries its identity in one URI SAN
(``amoskys.pki.names``). The files and their modes are listed in ``amoskys.pki.layout``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amoskys.errors import PkiError
from amoskys.pki import _files
from amoskys.pki.identities import create_identity_key, load_identity_key, load_private_key
from amoskys.pki.layout import (
    CA_CERT,
    CA_KEY,
    CLIENT_CERT,
    CLIENT_KEY,
    IDENTITY_KEY,
    SERVER_CERT,
    SERVER_KEY,
    ApplianceCredentials,
)
from amoskys.pki.names import identity_from_uri, identity_uri, validate_name, validate_trust_domain

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 397
BACKDATE = timedelta(hours=1)
"""Certificates start this long before "now" so a peer whose clock lags a little still accepts them."""


def cert_pem(cert: x509.Certificate) -> bytes:
    """`cert` in PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path: Path) -> x509.Certificate:
    """The certificate in PEM file `path`; PkiError naming the file when unreadable or not a certificate."""
    try:
        return x509.load_pem_x509_certificate(_files.read(path))
    except ValueError as err:
        raise PkiError(f"{path}: not a PEM X.509 certificate", path=str(path)) from err


def load_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The ECDSA private key of a TLS certificate in PEM file `path`."""
    key = load_private_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: expected an ECDSA private key, found {type(key).__name__}", path=str(path))
    return key


def cert_not_after(path: Path) -> datetime:
    """The end of validity (UTC) of the certificate in `path`."""
    return load_cert(path).not_valid_after_utc


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _check_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = load_cert(cert_path)
    key = load_tls_key(key_path)
    if not _same_public_key(cert, key):
        raise PkiError(f"{key_path}: private key does not match certificate {cert_path}", path=str(key_path))
    return cert, key


def _check_issued_by(cert: x509.Certificate, cert_path: Path, ca: x509.Certificate, ca_path: Path) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise PkiError(f"{cert_path}: not signed by the CA in {ca_path}", path=str(cert_path)) from err


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _load_ca(ca_cert: Path, ca_key: Path) -> _Issuer:
    """The CA pair, checked: a CA certificate and the private key that matches it."""
    cert, key = _check_pair(ca_cert, ca_key)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError(
            f"{ca_cert}: not a CA certificate (BasicConstraints ca=true missing)", path=str(ca_cert)
        )
    return _Issuer(cert, key)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _leaf(
    issuer: _Issuer,
    *,
    common_name: str,
    sans: Sequence[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_aki(issuer.cert), critical=False)
    )
    return builder.sign(issuer.key, hashes.SHA256())


def create_ca(dir: Path, common_name: str, now: datetime | None = None) -> tuple[Path, Path]:
    """Create a private CA (ECDSA P-256, 10 years) as `dir`/ca.crt and `dir`/ca.key; return both paths.

    Refuses to replace an existing CA: every certificate it issued would stop chaining.
    """
    at = _now(now)
    cert_path, key_path = dir / CA_CERT, dir / CA_KEY
    for path in (cert_path, key_path):
        if path.exists():
            raise PkiError(f"{path}: already exists; a CA is never replaced", path=str(path))
    _files.ensure_dir(dir)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - BACKDATE)
        .not_valid_after(at + timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    _files.write(key_path, _files.key_pem(key), _files.KEY_MODE)
    _files.write(cert_path, cert_pem(cert), _files.CERT_MODE)
    return cert_path, key_path


def _validity(
    at: datetime, valid_days: int, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else at - BACKDATE
    end = not_after if not_after is not None else at + timedelta(days=valid_days)
    if end <= start:
        raise ValueError(
            f"certificate validity ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    return start, end


def issue_client_cert(
    ca_cert: Path,
    ca_key: Path,
    *,
    uri: str,
    common_name: str,
    cert_path: Path,
    key_path: Path,
    valid_days: int = LEAF_VALID_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """Issue a TLS client certificate (URI SAN `uri`, EKU clientAuth) from the CA in `ca_cert`/`ca_key`.

    A fresh P-256 key is written to `key_path` (0600) and the certificate to `cert_path` (0644).
    `not_before`/`not_after` override the default validity (one hour ago .. `valid_days` from now), so
    tests can make an expired certificate; any CA pair works, so tests can make a foreign one.
    """
    issuer = _load_ca(ca_cert, ca_key)
    start, end = _validity(_now(now), valid_days, not_before, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(
        issuer,
        common_name=common_name,
        sans=[x509.UniformResourceIdentifier(uri)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        key=key,
        not_before=start,
        not_after=end,
    )
    _files.write(key_path, _files.key_pem(key), _files.KEY_MODE)
    _files.write(cert_path, cert_pem(cert), _files.CERT_MODE)
    return cert


def _server_sans(dns_names: Iterable[str], ip_addresses: Iterable[str], path: Path) -> list[x509.GeneralName]:
    """Validated, de-duplicated SANs in a stable order (DNS names, then IPs)."""
    dns = sorted({d.strip().lower() for d in dns_names if d.strip()})
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in ip_addresses:
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError as err:
            raise PkiError(f"{path}: server SAN {text!r} is not an IP address", path=str(path)) from err
        if ip not in ips:
            ips.append(ip)
    for name in dns:
        if not name.isascii():
            raise PkiError(
                f"{path}: server SAN {name!r} must be ASCII (use the IDNA A-label)", path=str(path)
            )
    if not dns and not ips:
        raise PkiError(
            f"{path}: the server certificate needs at least one DNS name or IP address", path=str(path)
        )
    return [x509.DNSName(d) for d in dns] + [x509.IPAddress(ip) for ip in sorted(ips, key=_ip_sort_key)]


def _ip_sort_key(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    return ip.version, int(ip)


def _san_set(cert: x509.Certificate) -> set[tuple[str, str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {("dns", d.lower()) for d in san.get_values_for_type(x509.DNSName)} | {
        ("ip", str(ip)) for ip in san.get_values_for_type(x509.IPAddress)
    }


def cert_accepts_host(path: Path, host: str) -> tuple[bool, str]:
    """Whether the certificate at `path` names `host` (a DNS name, ignoring case, or an IP address)
    among its SANs; also the SANs it names, as text for an error message."""
    sans = _san_set(load_cert(path))
    try:
        wanted = ("ip", str(ipaddress.ip_address(host)))
    except ValueError:
        wanted = ("dns", host.lower().rstrip("."))
    return wanted in sans, _describe_sans(sans)


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _describe_sans(sans: set[tuple[str, str]]) -> str:
    return ", ".join(value for _, value in sorted(sans)) or "none"


def _issue_server_cert(
    issuer: _Issuer,
    *,
    cert_path: Path,
    key_path: Path,
    sans: Sequence[x509.GeneralName],
    key: ec.EllipticCurvePrivateKey | None,
    valid_days: int,
    at: datetime,
) -> None:
    """Issue the bus server certificate; write a new key first when `key` is None."""
    new_key = key is None
    key = key or ec.generate_private_key(ec.SECP256R1())
    first = sans[0]
    common_name = str(first.value)
    start, end = _validity(at, valid_days, None, None)
    cert = _leaf(
        issuer,
        common_name=common_name,
        sans=sans,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        key=key,
        not_before=start,
        not_after=end,
    )
    if new_key:
        _files.write(key_path, _files.key_pem(key), _files.KEY_MODE)
    _files.write(cert_path, cert_pem(cert), _files.CERT_MODE)


def _all_present(paths: Sequence[Path]) -> bool:
    """Whether every file of a group is present (False when none is); PkiError naming the first
    missing one when only some are present."""
    present = [p.exists() for p in paths]
    if all(present):
        return True
    if any(present):
        missing = paths[present.index(False)]
        others = ", ".join(p.name for p in paths if p != missing)
        raise PkiError(
            f"{missing}: missing while {others} exists; restore it, or remove both to have them re-created",
            path=str(missing),
        )
    return False


def _expiry_reason(cert: x509.Certificate, at: datetime) -> str:
    """Why a certificate must be re-issued for its age: "expired <when>" when it has, else ""."""
    return f"expired {cert.not_valid_after_utc.isoformat()}" if cert.not_valid_after_utc <= at else ""


def ensure_appliance_pki(
    pki_dir: Path,
    *,
    name: str,
    trust_domain: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: datetime | None = None,
) -> ApplianceCredentials:
    """Create the appliance's PKI on first run; on later runs check it and reuse it.

    Each group of files (the CA pair, the server pair, the identity key, the client pair) is created
    when all its files are absent, checked when present, and refused (PkiError naming the missing
    file) when only part of it exists. A missing CA is never re-created while certificates it issued
    remain. The server certificate is re-issued from the same CA, with its existing key, when the
    configured SANs differ from the certificate's or it has expired; the client certificate likewise
    when the identity URI changed or it has expired. `created` says what was written and why.
    """
    at = _now(now)
    validate_name(name)
    validate_trust_domain(trust_domain)
    creds = ApplianceCredentials.in_dir(pki_dir)
    sans = _server_sans(dns_names, ip_addresses, creds.server_cert)
    created: list[str] = []
    _files.ensure_dir(pki_dir)

    # the CA
    if not _all_present((creds.ca_cert, creds.ca_key)):
        for dependant in (creds.server_cert, creds.server_key, creds.identity_cert, creds.identity_cert_key):
            if dependant.exists():
                raise PkiError(
                    f"{creds.ca_cert}: missing while {dependant} exists; restore the CA, or remove the "
                    "whole PKI dir to start over (every enrolled agent must then be enrolled again)",
                    path=str(creds.ca_cert),
                )
        create_ca(pki_dir, f"AMOSKYS CA {name} ({trust_domain})", now=at)
        created += [CA_CERT, CA_KEY]
    issuer = _load_ca(creds.ca_cert, creds.ca_key)

    # the bus server certificate
    server_complete = _all_present((creds.server_cert, creds.server_key))
    key: ec.EllipticCurvePrivateKey | None = None  # None: a new key is written with the certificate
    reason = ""
    if server_complete:
        cert, key = _check_pair(creds.server_cert, creds.server_key)
        _check_issued_by(cert, creds.server_cert, issuer.cert, creds.ca_cert)
        wanted = _san_set_of(sans)
        if _san_set(cert) != wanted:
            reason = f"SANs changed from [{_describe_sans(_san_set(cert))}] to [{_describe_sans(wanted)}]"
        else:
            reason = _expiry_reason(cert, at)
    if not server_complete or reason:
        _issue_server_cert(
            issuer,
            cert_path=creds.server_cert,
            key_path=creds.server_key,
            sans=sans,
            key=key,
            valid_days=LEAF_VALID_DAYS,
            at=at,
        )
        created += [f"{SERVER_CERT} (re-issued: {reason})"] if reason else [SERVER_CERT, SERVER_KEY]

    # the Ed25519 identity
    if creds.identity_key.exists():
        load_identity_key(creds.identity_key)
    else:
        create_identity_key(creds.identity_key)
        created.append(IDENTITY_KEY)

    # the appliance's own client certificate
    uri = identity_uri(trust_domain, name)
    client_complete = _all_present((creds.identity_cert, creds.identity_cert_key))
    reason = ""
    if client_complete:
        cert, _ = _check_pair(creds.identity_cert, creds.identity_cert_key)
        _check_issued_by(cert, creds.identity_cert, issuer.cert, creds.ca_cert)
        if _uris(cert) != [uri]:
            reason = f"identity changed from {', '.join(_uris(cert)) or 'none'} to {uri}"
        else:
            reason = _expiry_reason(cert, at)
    if not client_complete or reason:
        issue_client_cert(
            creds.ca_cert,
            creds.ca_key,
            uri=uri,
            common_name=name,
            cert_path=creds.identity_cert,
            key_path=creds.identity_cert_key,
            now=at,
        )
        created += [f"{CLIENT_CERT} (re-issued: {reason})"] if reason else [CLIENT_CERT, CLIENT_KEY]

    return ApplianceCredentials.in_dir(pki_dir, tuple(created))


def _san_set_of(sans: Sequence[x509.GeneralName]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for san in sans:
        if isinstance(san, x509.DNSName):
            out.add(("dns", san.value.lower()))
        elif isinstance(san, x509.IPAddress):
            out.add(("ip", str(san.value)))
    return out


def renew_server_cert(
    credentials: ApplianceCredentials,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    valid_days: int = LEAF_VALID_DAYS,
    now: datetime | None = None,
) -> None:
    """Re-issue the bus server certificate from the same CA with these SANs.

    The existing server key is kept, so the certificate file is the only thing replaced (atomically)
    and a server reloading its credentials never reads a certificate that does not match its key.
    """
    issuer = _load_ca(credentials.ca_cert, credentials.ca_key)
    sans = _server_sans(dns_names, ip_addresses, credentials.server_cert)
    key = load_tls_key(credentials.server_key) if credentials.server_key.exists() else None
    _issue_server_cert(
        issuer,
        cert_path=credentials.server_cert,
        key_path=credentials.server_key,
        sans=sans,
        key=key,
        valid_days=valid_days,
        at=_now(now),
    )


def appliance_identity(credentials: ApplianceCredentials, trust_domain: str) -> str:
    """The appliance's own identity name, read from its client certificate (PkiError when that
    certificate is unreadable or names no identity of `trust_domain`)."""
    cert = load_cert(credentials.identity_cert)
    for uri in _uris(cert):
        name = identity_from_uri(uri, trust_domain)
        if name is not None:
            return name
    raise PkiError(
        f"{credentials.identity_cert}: names no identity of trust domain {trust_domain!r}",
        path=str(credentials.identity_cert),
    )
