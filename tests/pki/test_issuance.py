"""amoskys.pki.issuance: the appliance's CA, server and client certificates, created, checked and renewed in tmp_path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID
from pki_support import NOW, TD, all_files, ensure, mode, sans_of

from amoskys.errors import PkiError
from amoskys.pki.identities import load_identity_key
from amoskys.pki.issuance import (
    cert_not_after,
    create_ca,
    ensure_appliance_pki,
    issue_client_cert,
    load_cert,
    renew_server_cert,
)
from amoskys.pki.layout import ApplianceCredentials
from amoskys.pki.names import identity_uri


def test_first_run_creates_every_file_with_private_modes(tmp_path: Path) -> None:
    creds = ensure(tmp_path / "data" / "pki")

    assert set(creds.created) == {
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "identity.ed25519",
        "client.crt",
        "client.key",
    }
    assert mode(tmp_path / "data" / "pki") == 0o700
    for key in (creds.ca_key, creds.server_key, creds.identity_key, creds.identity_cert_key):
        assert mode(key) == 0o600, key
    for cert in (creds.ca_cert, creds.server_cert, creds.identity_cert):
        assert mode(cert) in (0o600, 0o644), cert
    assert not [p for p in (tmp_path / "data" / "pki").iterdir() if p.name.endswith(".tmp")]
    assert isinstance(load_identity_key(creds.identity_key), Ed25519PrivateKey)


def test_second_run_reuses_every_file_byte_for_byte(tmp_path: Path) -> None:
    first = ensure(tmp_path / "pki")
    before = {p: p.read_bytes() for p in all_files(first)}

    second = ensure(tmp_path / "pki")

    assert second.created == ()
    assert {p: p.read_bytes() for p in all_files(second)} == before


def test_changed_sans_reissue_the_server_cert_from_the_same_ca(tmp_path: Path) -> None:
    first = ensure(tmp_path / "pki")
    ca_before, key_before = first.ca_cert.read_bytes(), first.server_key.read_bytes()
    old_serial = load_cert(first.server_cert).serial_number

    second = ensure(tmp_path / "pki", dns_names=["bus.site1.example"], ip_addresses=["10.0.0.5", "::1"])

    assert len(second.created) == 1
    assert second.created[0].startswith("server.crt (re-issued: SANs changed")
    assert "10.0.0.5" in second.created[0]
    cert = load_cert(second.server_cert)
    assert cert.serial_number != old_serial
    assert sorted(sans_of(cert).get_values_for_type(x509.DNSName)) == ["bus.site1.example"]
    assert {str(ip) for ip in sans_of(cert).get_values_for_type(x509.IPAddress)} == {"10.0.0.5", "::1"}
    assert second.ca_cert.read_bytes() == ca_before
    assert second.server_key.read_bytes() == key_before
    cert.verify_directly_issued_by(load_cert(second.ca_cert))
    assert (
        ensure(tmp_path / "pki", dns_names=["bus.site1.example"], ip_addresses=["::1", "10.0.0.5"]).created
        == ()
    )


def test_a_renamed_appliance_gets_a_client_cert_for_its_new_identity(tmp_path: Path) -> None:
    first = ensure(tmp_path / "pki")
    identity_before = first.identity_key.read_bytes()

    second = ensure(tmp_path / "pki", name="appliance-2")

    assert second.created == (
        f"client.crt (re-issued: identity changed from spiffe://{TD}/agent/appliance-1 "
        f"to spiffe://{TD}/agent/appliance-2)",
    )
    uris = sans_of(load_cert(second.identity_cert)).get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{TD}/agent/appliance-2"]
    assert second.identity_key.read_bytes() == identity_before


def test_an_expired_server_cert_is_reissued_at_start(tmp_path: Path) -> None:
    ensure(tmp_path / "pki", now=NOW)

    later = ensure(tmp_path / "pki", now=NOW + timedelta(days=400))

    assert [c.split(" ")[0] for c in later.created] == ["server.crt", "client.crt"]
    assert "expired" in later.created[0]
    assert cert_not_after(later.server_cert) > NOW + timedelta(days=400)


def test_a_server_cert_from_another_ca_is_refused_naming_the_file(tmp_path: Path) -> None:
    creds = ensure(tmp_path / "pki")
    foreign = ensure_appliance_pki(
        tmp_path / "foreign", name="x", trust_domain=TD, dns_names=["localhost"], ip_addresses=[]
    )
    creds.server_cert.write_bytes(foreign.server_cert.read_bytes())
    creds.server_key.write_bytes(foreign.server_key.read_bytes())

    with pytest.raises(PkiError, match="not signed by the CA") as err:
        ensure(tmp_path / "pki")
    assert err.value.path == str(creds.server_cert)


def test_a_key_that_does_not_match_its_cert_is_refused_naming_the_key(tmp_path: Path) -> None:
    creds = ensure(tmp_path / "pki")
    creds.server_key.write_bytes(creds.identity_cert_key.read_bytes())

    with pytest.raises(PkiError, match="does not match certificate") as err:
        ensure(tmp_path / "pki")
    assert err.value.path == str(creds.server_key)


@pytest.mark.parametrize("missing", ["ca.key", "server.crt", "client.key"])
def test_half_a_pair_is_refused_naming_the_missing_file(tmp_path: Path, missing: str) -> None:
    ensure(tmp_path / "pki")
    (tmp_path / "pki" / missing).unlink()

    with pytest.raises(PkiError, match="missing while") as err:
        ensure(tmp_path / "pki")
    assert err.value.path == str(tmp_path / "pki" / missing)


def test_a_lost_ca_is_not_silently_recreated_under_existing_certs(tmp_path: Path) -> None:
    creds = ensure(tmp_path / "pki")
    creds.ca_cert.unlink()
    creds.ca_key.unlink()

    with pytest.raises(PkiError, match="restore the CA") as err:
        ensure(tmp_path / "pki")
    assert err.value.path == str(creds.ca_cert)


# a broken PEM, its marker split so no secret scanner mistakes this file for one holding a key
BROKEN_PEM = b"-----BEGIN " + b"PRIVATE KEY-----\nAAAA\n-----END " + b"PRIVATE KEY-----\n"


@pytest.mark.parametrize("content", [b"", b"garbage", BROKEN_PEM])
def test_an_unreadable_identity_key_is_refused_naming_the_file(tmp_path: Path, content: bytes) -> None:
    creds = ensure(tmp_path / "pki")
    creds.identity_key.write_bytes(content)

    with pytest.raises(PkiError, match="not an unencrypted PEM private key") as err:
        ensure(tmp_path / "pki")
    assert err.value.path == str(creds.identity_key)


def test_an_identity_key_of_the_wrong_type_is_refused(creds: ApplianceCredentials) -> None:
    with pytest.raises(PkiError, match="expected an Ed25519 private key"):
        load_identity_key(creds.server_key)


def test_a_garbage_cert_is_refused_naming_the_file(creds: ApplianceCredentials) -> None:
    creds.ca_cert.write_bytes(b"not a cert")
    with pytest.raises(PkiError, match=r"not a PEM X\.509 certificate") as err:
        cert_not_after(creds.ca_cert)
    assert err.value.path == str(creds.ca_cert)


@pytest.mark.parametrize(
    ("dns", "ips", "message"),
    [([], [], "at least one DNS name or IP"), (["localhost"], ["10.0.0.300"], "not an IP address")],
)
def test_bad_server_sans_are_refused(tmp_path: Path, dns: list[str], ips: list[str], message: str) -> None:
    with pytest.raises(PkiError, match=message):
        ensure(tmp_path / "pki", dns_names=dns, ip_addresses=ips)


def test_certificates_carry_the_extensions_tls_stacks_require(creds: ApplianceCredentials) -> None:
    ca = load_cert(creds.ca_cert)
    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_bc.critical and ca_bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= timedelta(days=3650)
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    for path, usage in (
        (creds.server_cert, ExtendedKeyUsageOID.SERVER_AUTH),
        (creds.identity_cert, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        cert = load_cert(path)
        cert.verify_directly_issued_by(ca)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and not bc.value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski.digest
        assert (
            timedelta(days=397) <= cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=398)
        )

    uris = sans_of(load_cert(creds.identity_cert)).get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{TD}/agent/appliance-1"]


def test_renew_server_cert_keeps_the_key_and_changes_the_sans(creds: ApplianceCredentials) -> None:
    key_before = creds.server_key.read_bytes()

    renew_server_cert(creds, dns_names=["new.site1.example"], ip_addresses=[], valid_days=30, now=NOW)

    cert = load_cert(creds.server_cert)
    assert sans_of(cert).get_values_for_type(x509.DNSName) == ["new.site1.example"]
    assert cert_not_after(creds.server_cert) == (NOW + timedelta(days=30)).replace(microsecond=0)
    assert creds.server_key.read_bytes() == key_before
    cert.verify_directly_issued_by(load_cert(creds.ca_cert))


def test_create_ca_never_replaces_an_existing_ca(creds: ApplianceCredentials) -> None:
    with pytest.raises(PkiError, match="a CA is never replaced"):
        create_ca(creds.ca_cert.parent, "again")


def test_an_expired_client_cert_can_be_made(creds: ApplianceCredentials, tmp_path: Path) -> None:
    cert = issue_client_cert(
        creds.ca_cert,
        creds.ca_key,
        uri=identity_uri(TD, "old"),
        common_name="old",
        cert_path=tmp_path / "old.crt",
        key_path=tmp_path / "old.key",
        not_before=NOW - timedelta(days=30),
        not_after=NOW - timedelta(days=1),
    )
    assert cert_not_after(tmp_path / "old.crt") == (NOW - timedelta(days=1)).replace(microsecond=0)
    assert cert.not_valid_after_utc < datetime.now(UTC)
    assert mode(tmp_path / "old.key") == 0o600
