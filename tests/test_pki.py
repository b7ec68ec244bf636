"""Tests of amoskys.pki: real files in tmp_path, real certificates, and a real grpc mTLS server."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from hypothesis import given, settings
from hypothesis import strategies as st

from amoskys import pki
from amoskys.errors import PkiError

TD = "site1.example"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ensure(pki_dir: Path, **overrides: object) -> pki.ApplianceCredentials:
    kwargs: dict[str, object] = {
        "name": "appliance-1",
        "trust_domain": TD,
        "dns_names": ["localhost", "bus.site1.example"],
        "ip_addresses": ["127.0.0.1"],
    }
    kwargs.update(overrides)
    return pki.ensure_appliance_pki(pki_dir, **kwargs)  # type: ignore[arg-type]


def all_files(creds: pki.ApplianceCredentials) -> list[Path]:
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


@pytest.fixture
def creds(tmp_path: Path) -> pki.ApplianceCredentials:
    return ensure(tmp_path / "pki")


# --- the appliance's PKI ---------------------------------------------------------------------------


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
    assert isinstance(pki.load_identity_key(creds.identity_key), Ed25519PrivateKey)


def test_second_run_reuses_every_file_byte_for_byte(tmp_path: Path) -> None:
    first = ensure(tmp_path / "pki")
    before = {p: p.read_bytes() for p in all_files(first)}

    second = ensure(tmp_path / "pki")

    assert second.created == ()
    assert {p: p.read_bytes() for p in all_files(second)} == before


def test_changed_sans_reissue_the_server_cert_from_the_same_ca(tmp_path: Path) -> None:
    first = ensure(tmp_path / "pki")
    ca_before, key_before = first.ca_cert.read_bytes(), first.server_key.read_bytes()
    old_serial = pki.load_cert(first.server_cert).serial_number

    second = ensure(tmp_path / "pki", dns_names=["bus.site1.example"], ip_addresses=["10.0.0.5", "::1"])

    assert len(second.created) == 1
    assert second.created[0].startswith("server.crt (re-issued: SANs changed")
    assert "10.0.0.5" in second.created[0]
    cert = pki.load_cert(second.server_cert)
    assert cert.serial_number != old_serial
    assert sorted(sans_of(cert).get_values_for_type(x509.DNSName)) == ["bus.site1.example"]
    assert {str(ip) for ip in sans_of(cert).get_values_for_type(x509.IPAddress)} == {"10.0.0.5", "::1"}
    assert second.ca_cert.read_bytes() == ca_before
    assert second.server_key.read_bytes() == key_before
    cert.verify_directly_issued_by(pki.load_cert(second.ca_cert))
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
    uris = sans_of(pki.load_cert(second.identity_cert)).get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{TD}/agent/appliance-2"]
    assert second.identity_key.read_bytes() == identity_before


def test_an_expired_server_cert_is_reissued_at_start(tmp_path: Path) -> None:
    ensure(tmp_path / "pki", now=NOW)

    later = ensure(tmp_path / "pki", now=NOW + timedelta(days=400))

    assert [c.split(" ")[0] for c in later.created] == ["server.crt", "client.crt"]
    assert "expired" in later.created[0]
    assert pki.cert_not_after(later.server_cert) > NOW + timedelta(days=400)


def test_a_server_cert_from_another_ca_is_refused_naming_the_file(tmp_path: Path) -> None:
    creds = ensure(tmp_path / "pki")
    foreign = pki.ensure_appliance_pki(
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


def test_an_identity_key_of_the_wrong_type_is_refused(creds: pki.ApplianceCredentials) -> None:
    with pytest.raises(PkiError, match="expected an Ed25519 private key"):
        pki.load_identity_key(creds.server_key)


def test_a_garbage_cert_is_refused_naming_the_file(creds: pki.ApplianceCredentials) -> None:
    creds.ca_cert.write_bytes(b"not a cert")
    with pytest.raises(PkiError, match=r"not a PEM X\.509 certificate") as err:
        pki.cert_not_after(creds.ca_cert)
    assert err.value.path == str(creds.ca_cert)


@pytest.mark.parametrize(
    ("dns", "ips", "message"),
    [([], [], "at least one DNS name or IP"), (["localhost"], ["10.0.0.300"], "not an IP address")],
)
def test_bad_server_sans_are_refused(tmp_path: Path, dns: list[str], ips: list[str], message: str) -> None:
    with pytest.raises(PkiError, match=message):
        ensure(tmp_path / "pki", dns_names=dns, ip_addresses=ips)


def test_certificates_carry_the_extensions_tls_stacks_require(creds: pki.ApplianceCredentials) -> None:
    ca = pki.load_cert(creds.ca_cert)
    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_bc.critical and ca_bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= timedelta(days=3650)
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    for path, usage in (
        (creds.server_cert, ExtendedKeyUsageOID.SERVER_AUTH),
        (creds.identity_cert, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        cert = pki.load_cert(path)
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

    uris = sans_of(pki.load_cert(creds.identity_cert)).get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{TD}/agent/appliance-1"]


def test_renew_server_cert_keeps_the_key_and_changes_the_sans(creds: pki.ApplianceCredentials) -> None:
    key_before = creds.server_key.read_bytes()

    pki.renew_server_cert(creds, dns_names=["new.site1.example"], ip_addresses=[], valid_days=30, now=NOW)

    cert = pki.load_cert(creds.server_cert)
    assert sans_of(cert).get_values_for_type(x509.DNSName) == ["new.site1.example"]
    assert pki.cert_not_after(creds.server_cert) == (NOW + timedelta(days=30)).replace(microsecond=0)
    assert creds.server_key.read_bytes() == key_before
    cert.verify_directly_issued_by(pki.load_cert(creds.ca_cert))


def test_create_ca_never_replaces_an_existing_ca(creds: pki.ApplianceCredentials) -> None:
    with pytest.raises(PkiError, match="a CA is never replaced"):
        pki.create_ca(creds.ca_cert.parent, "again")


# --- identities ------------------------------------------------------------------------------------


def test_identity_uri_round_trips_and_rejects_other_trust_domains() -> None:
    uri = pki.identity_uri(TD, "edge-7.lab")
    assert uri == "spiffe://site1.example/agent/edge-7.lab"
    assert pki.identity_from_uri(uri, TD) == "edge-7.lab"
    assert pki.identity_from_uri(uri, "other.example") is None
    assert pki.identity_from_uri("spiffe://site1.example.evil/agent/x", TD) is None
    assert pki.identity_from_uri("spiffe://site1.example/agent/a/b", TD) is None
    assert pki.identity_from_uri("spiffe://site1.example/agent/", TD) is None
    assert pki.identity_from_uri("spiffe://site1.example/workload/x", TD) is None
    assert pki.identity_from_uri("https://site1.example/agent/x", TD) is None


@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden", "x" * 65, "naïve", "a b"])
def test_identity_uri_rejects_names_that_are_not_identities(name: str) -> None:
    with pytest.raises(PkiError, match="identity name"):
        pki.identity_uri(TD, name)


@pytest.mark.parametrize("domain", ["", "Upper.example", "a/b", "-x.example", "x.example."])
def test_identity_uri_rejects_bad_trust_domains(domain: str) -> None:
    with pytest.raises(PkiError, match="trust domain"):
        pki.identity_uri(domain, "a")


def test_peer_identity_reads_each_key_grpc_uses_and_refuses_ambiguity() -> None:
    ours = pki.identity_uri(TD, "a1").encode()
    assert pki.peer_identity({"peer_spiffe_id": [ours]}, TD) == "a1"
    assert pki.peer_identity({"peer_uri": [b"urn:x", ours]}, TD) == "a1"
    assert pki.peer_identity({"x509_subject_alternative_name": [b"localhost", ours]}, TD) == "a1"
    assert pki.peer_identity({"peer_uri": [ours]}, "other.example") is None
    assert pki.peer_identity({"peer_uri": [ours, pki.identity_uri(TD, "a2").encode()]}, TD) is None
    assert pki.peer_identity({"x509_common_name": [b"a1"]}, TD) is None
    assert pki.peer_identity({}, TD) is None


def test_key_id_is_sixteen_hex_digits_of_sha256_of_the_raw_key() -> None:
    key = Ed25519PrivateKey.generate()
    kid = pki.key_id(key.public_key())
    assert kid == hashlib.sha256(pki.public_key_raw(key)).hexdigest()[:16]
    assert kid == pki.key_id(key.public_key())
    assert kid != pki.key_id(Ed25519PrivateKey.generate().public_key())


# --- batch signatures ------------------------------------------------------------------------------


@dataclass
class Batch:
    key: Ed25519PrivateKey
    raw: bytes
    key_id: str
    prev: bytes
    events: bytes
    sig: bytes


@pytest.fixture
def batch() -> Batch:
    key = Ed25519PrivateKey.generate()
    kid = pki.key_id(key.public_key())
    prev = hashlib.sha256(b"previous").digest()
    events = b"\x0a\x05hello" * 50
    return Batch(key, pki.public_key_raw(key), kid, prev, events, pki.sign_batch(key, kid, prev, events))


def test_a_signed_batch_verifies(batch: Batch) -> None:
    assert len(batch.sig) == 64
    assert pki.verify_batch(batch.raw, batch.key_id, batch.prev, batch.events, batch.sig)
    first = pki.sign_batch(batch.key, batch.key_id, pki.GENESIS_DIGEST, batch.events)
    assert pki.verify_batch(batch.raw, batch.key_id, b"", batch.events, first)
    assert pki.verify_batch(
        bytearray(batch.raw), batch.key_id, batch.prev, memoryview(batch.events), batch.sig
    )


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("field", ["events", "prev_digest", "key_id", "signature", "public_key"])
@pytest.mark.parametrize("where", [0, -1])
def test_a_flipped_bit_anywhere_fails_verification(batch: Batch, field: str, where: int) -> None:
    args = {
        "public_key_raw": batch.raw,
        "key_id": batch.key_id,
        "prev_digest": batch.prev,
        "events": batch.events,
        "signature": batch.sig,
    }
    if field == "key_id":
        args["key_id"] = flip(batch.key_id.encode(), where % len(batch.key_id)).decode()
    elif field == "public_key":
        args["public_key_raw"] = flip(batch.raw, where % len(batch.raw))
    else:
        name = {"events": "events", "prev_digest": "prev_digest", "signature": "signature"}[field]
        value = args[name]
        assert isinstance(value, bytes)
        args[name] = flip(value, where % len(value))

    assert pki.verify_batch(**args) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"signature": b""},
        {"signature": b"\x00" * 63},
        {"signature": b"\x00" * 65},
        {"public_key_raw": b""},
        {"public_key_raw": b"\x00" * 31},
        {"prev_digest": b"\x00" * 70000},
        {"key_id": "k" * 70000},
        {"key_id": "\udcff"},
        {"signature": None},
        {"events": None},
        {"key_id": None},
        {"prev_digest": None},
    ],
)
def test_malformed_input_returns_false_without_raising(batch: Batch, bad: dict[str, object]) -> None:
    args: dict[str, object] = {
        "public_key_raw": batch.raw,
        "key_id": batch.key_id,
        "prev_digest": batch.prev,
        "events": batch.events,
        "signature": batch.sig,
    }
    args.update(bad)
    assert pki.verify_batch(**args) is False  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=40),
    key_id=st.text(max_size=40),
    prev=st.binary(max_size=40),
    events=st.binary(max_size=200),
    sig=st.binary(max_size=80),
)
def test_arbitrary_input_never_raises_and_never_verifies(
    raw: bytes, key_id: str, prev: bytes, events: bytes, sig: bytes
) -> None:
    assert pki.verify_batch(raw, key_id, prev, events, sig) is False


def test_the_truncated_signature_of_a_real_batch_returns_false(batch: Batch) -> None:
    for length in (0, 1, 32, 63):
        assert (
            pki.verify_batch(batch.raw, batch.key_id, batch.prev, batch.events, batch.sig[:length]) is False
        )


def test_batch_digest_follows_the_documented_byte_layout() -> None:
    events = b"serialized EventList"
    expected = hashlib.sha256(
        b"amoskys-batch-v1" + b"\x00\x02ab" + b"\x00\x03xyz" + hashlib.sha256(events).digest()
    ).digest()
    assert pki.batch_digest("ab", b"xyz", events) == expected
    # length prefixes make the split between key_id and prev_digest unambiguous
    assert pki.batch_digest("a", b"bxyz", events) != expected
    assert pki.batch_digest("ab", b"", events) != pki.batch_digest("a", b"", events)


def test_a_signature_is_bound_to_its_place_in_the_chain(batch: Batch) -> None:
    digest = pki.batch_digest(batch.key_id, batch.prev, batch.events)
    second = pki.sign_batch(batch.key, batch.key_id, digest, batch.events)

    assert pki.verify_batch(batch.raw, batch.key_id, digest, batch.events, second)
    assert not pki.verify_batch(batch.raw, batch.key_id, batch.prev, batch.events, second)
    assert pki.batch_digest(batch.key_id, digest, batch.events) != digest


# --- enrolment -------------------------------------------------------------------------------------


def test_enroll_writes_a_bundle_whose_cert_carries_the_identity_and_chains_to_the_ca(
    creds: pki.ApplianceCredentials, tmp_path: Path
) -> None:
    out = tmp_path / "bundles" / "edge-7"
    bundle = pki.enroll_agent(
        creds,
        name="edge-7",
        role="relay",
        trust_domain=TD,
        bus_address="bus.site1.example:50051",
        out_dir=out,
    )

    assert sorted(p.name for p in out.iterdir()) == [
        "bundle.json",
        "ca.crt",
        "client.crt",
        "client.key",
        "identity.ed25519",
    ]
    assert mode(out) == 0o700
    assert mode(out / "client.key") == 0o600
    assert mode(out / "identity.ed25519") == 0o600
    assert (out / "ca.crt").read_bytes() == creds.ca_cert.read_bytes()

    cert = pki.load_cert(out / "client.crt")
    cert.verify_directly_issued_by(pki.load_cert(creds.ca_cert))
    assert sans_of(cert).get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://site1.example/agent/edge-7"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pki.load_tls_key(out / "client.key")

    identity = pki.load_identity_key(out / "identity.ed25519")
    assert bundle.public_key_raw == pki.public_key_raw(identity)
    assert bundle.key_id == pki.key_id(identity.public_key())
    assert (bundle.dir, bundle.name, bundle.role) == (out, "edge-7", "relay")
    assert bundle.cert_serial == cert.serial_number
    assert bundle.not_after == cert.not_valid_after_utc
    assert json.loads((out / "bundle.json").read_text()) == {
        "name": "edge-7",
        "role": "relay",
        "bus_address": "bus.site1.example:50051",
        "trust_domain": TD,
        "key_id": bundle.key_id,
    }


def test_enroll_refuses_to_overwrite_an_existing_bundle(
    creds: pki.ApplianceCredentials, tmp_path: Path
) -> None:
    out = tmp_path / "edge"
    pki.enroll_agent(creds, name="edge", role="agent", trust_domain=TD, bus_address="b:1", out_dir=out)
    key_before = (out / "identity.ed25519").read_bytes()

    with pytest.raises(PkiError, match="already exists"):
        pki.enroll_agent(creds, name="edge", role="agent", trust_domain=TD, bus_address="b:1", out_dir=out)
    assert (out / "identity.ed25519").read_bytes() == key_before


def test_enroll_rejects_an_unknown_role(creds: pki.ApplianceCredentials, tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="role 'admin'"):
        pki.enroll_agent(
            creds,
            name="edge",
            role="admin",  # type: ignore[arg-type]
            trust_domain=TD,
            bus_address="b:1",
            out_dir=tmp_path / "edge",
        )
    assert not (tmp_path / "edge").exists()


def test_an_expired_client_cert_can_be_made(creds: pki.ApplianceCredentials, tmp_path: Path) -> None:
    cert = pki.issue_client_cert(
        creds.ca_cert,
        creds.ca_key,
        uri=pki.identity_uri(TD, "old"),
        common_name="old",
        cert_path=tmp_path / "old.crt",
        key_path=tmp_path / "old.key",
        not_before=NOW - timedelta(days=30),
        not_after=NOW - timedelta(days=1),
    )
    assert pki.cert_not_after(tmp_path / "old.crt") == (NOW - timedelta(days=1)).replace(microsecond=0)
    assert cert.not_valid_after_utc < datetime.now(UTC)
    assert mode(tmp_path / "old.key") == 0o600


# --- grpc accepts these certificates ---------------------------------------------------------------


class RecordingHealth(HealthServicer):
    """The grpc health service, recording each caller's auth context."""

    def __init__(self) -> None:
        super().__init__()
        self.auth_contexts: list[dict[str, list[bytes]]] = []

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> object:  # type: ignore[override]
        self.auth_contexts.append(context.auth_context())
        return await super().Check(request, context)


@dataclass
class Bus:
    port: int
    health: RecordingHealth
    creds: pki.ApplianceCredentials


@pytest.fixture
async def bus(creds: pki.ApplianceCredentials) -> AsyncIterator[Bus]:
    server = grpc.aio.server()
    health = RecordingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server_creds = grpc.ssl_server_credentials(
        [(creds.server_key.read_bytes(), creds.server_cert.read_bytes())],
        root_certificates=creds.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", server_creds)
    await server.start()
    try:
        yield Bus(port, health, creds)
    finally:
        await server.stop(None)


async def check(port: int, channel_creds: grpc.ChannelCredentials) -> health_pb2.HealthCheckResponse:
    async with grpc.aio.secure_channel(f"localhost:{port}", channel_creds) as channel:
        return await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def client_creds(ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


async def test_grpc_accepts_an_enrolled_client_and_exposes_its_identity(bus: Bus, tmp_path: Path) -> None:
    out = tmp_path / "agent"
    pki.enroll_agent(bus.creds, name="edge-7", role="agent", trust_domain=TD, bus_address="x", out_dir=out)

    response = await check(bus.port, client_creds(out / "ca.crt", out / "client.crt", out / "client.key"))

    assert response.status == health_pb2.HealthCheckResponse.SERVING
    [auth] = bus.health.auth_contexts
    uri = b"spiffe://site1.example/agent/edge-7"
    assert auth["peer_spiffe_id"] == [uri]
    assert auth["peer_uri"] == [uri]
    assert auth["x509_subject_alternative_name"] == [uri]
    assert set(pki.PEER_IDENTITY_KEYS) <= set(auth)
    assert pki.peer_identity(auth, TD) == "edge-7"
    assert pki.peer_identity(auth, "other.example") is None


async def test_grpc_accepts_the_appliances_own_client_cert(bus: Bus) -> None:
    c = bus.creds
    await check(bus.port, client_creds(c.ca_cert, c.identity_cert, c.identity_cert_key))
    assert pki.peer_identity(bus.health.auth_contexts[0], TD) == "appliance-1"


@pytest.mark.parametrize("client", ["no cert", "another CA", "expired"])
async def test_grpc_refuses_clients_without_a_valid_cert_with_unavailable(
    bus: Bus, tmp_path: Path, client: str
) -> None:
    ca, ca_key = bus.creds.ca_cert, bus.creds.ca_key
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    now = datetime.now(UTC)
    validity: dict[str, datetime] = {}
    if client == "another CA":
        ca, ca_key = pki.create_ca(tmp_path / "other", "another CA")
    if client == "expired":
        validity = {"not_before": now - timedelta(days=30), "not_after": now - timedelta(days=1)}
    pki.issue_client_cert(
        ca, ca_key, uri=pki.identity_uri(TD, "x"), common_name="x", cert_path=cert, key_path=key, **validity
    )
    if client == "no cert":
        channel_creds = client_creds(bus.creds.ca_cert)
    else:
        channel_creds = client_creds(bus.creds.ca_cert, cert, key)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await check(bus.port, channel_creds)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert bus.health.auth_contexts == []
