"""amoskys.pki.enrolment: an agent's bundle on disk and the appliance's copy of its certificate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pki_support import TD, mode, sans_of

from amoskys.config import BusConfig
from amoskys.errors import PkiError
from amoskys.pki.enrolment import (
    EnrolmentBundle,
    agent_cert_path,
    agent_cert_paths,
    enroll,
    enroll_agent,
    write_agent_cert,
)
from amoskys.pki.identities import key_id, load_identity_key, public_key_raw
from amoskys.pki.issuance import load_cert, load_tls_key
from amoskys.pki.layout import ApplianceCredentials


def test_enroll_writes_a_bundle_whose_cert_carries_the_identity_and_chains_to_the_ca(
    creds: ApplianceCredentials, tmp_path: Path
) -> None:
    out = tmp_path / "bundles" / "edge-7"
    bundle = enroll_agent(
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

    cert = load_cert(out / "client.crt")
    cert.verify_directly_issued_by(load_cert(creds.ca_cert))
    assert sans_of(cert).get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://site1.example/agent/edge-7"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert load_tls_key(out / "client.key")

    identity = load_identity_key(out / "identity.ed25519")
    assert bundle.public_key_raw == public_key_raw(identity)
    assert bundle.key_id == key_id(identity.public_key())
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


def test_enroll_refuses_to_overwrite_an_existing_bundle(creds: ApplianceCredentials, tmp_path: Path) -> None:
    out = tmp_path / "edge"
    enroll_agent(creds, name="edge", role="agent", trust_domain=TD, bus_address="b:1", out_dir=out)
    key_before = (out / "identity.ed25519").read_bytes()

    with pytest.raises(PkiError, match="already exists"):
        enroll_agent(creds, name="edge", role="agent", trust_domain=TD, bus_address="b:1", out_dir=out)
    assert (out / "identity.ed25519").read_bytes() == key_before


def test_enroll_rejects_an_unknown_role(creds: ApplianceCredentials, tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="role 'admin'"):
        enroll_agent(
            creds,
            name="edge",
            role="admin",  # type: ignore[arg-type]
            trust_domain=TD,
            bus_address="b:1",
            out_dir=tmp_path / "edge",
        )
    assert not (tmp_path / "edge").exists()


# --- enroll: the whole of `amoskys agents enroll` ----------------------------------------------------


def run_enroll(creds: ApplianceCredentials, tmp_path: Path, name: str, recorded: list[str], **bus: str):
    """`enroll` as the CLI calls it; `recorded` gets the name of each bundle `record` is called with,
    and whether the agent's certificate was already kept then (it must not be)."""
    pki_dir = creds.ca_cert.parent

    def record(bundle: EnrolmentBundle) -> None:
        recorded.append(f"{bundle.name} kept={agent_cert_path(pki_dir, bundle.name).exists()}")

    return enroll(
        creds,
        BusConfig(trust_domain=TD, **bus),
        pki_dir=pki_dir,
        run_json=tmp_path / "run.json",
        name=name,
        role="agent",
        out_dir=tmp_path / name,
        record=record,
    )


def test_enroll_records_the_identity_then_keeps_the_agents_certificate(
    creds: ApplianceCredentials, tmp_path: Path
) -> None:
    recorded: list[str] = []
    bundle = run_enroll(creds, tmp_path, "edge-7", recorded, advertise_address="bus.site1.example:50051")

    assert recorded == ["edge-7 kept=False"]
    kept = creds.ca_cert.parent / "agents" / "edge-7.crt"
    assert agent_cert_path(creds.ca_cert.parent, "edge-7") == kept
    assert kept.read_bytes() == (tmp_path / "edge-7" / "client.crt").read_bytes()
    assert load_cert(kept).serial_number == bundle.cert_serial
    assert mode(kept) == 0o600
    assert mode(kept.parent) == 0o700
    assert agent_cert_paths(creds.ca_cert.parent) == [kept]
    assert (
        json.loads((tmp_path / "edge-7" / "bundle.json").read_text())["bus_address"]
        == "bus.site1.example:50051"
    )


def test_enroll_refused_writes_and_records_nothing(creds: ApplianceCredentials, tmp_path: Path) -> None:
    recorded: list[str] = []
    with pytest.raises(PkiError, match="own name"):
        run_enroll(creds, tmp_path, "Appliance-1", recorded, advertise_address="localhost:50051")

    assert recorded == []
    assert not (tmp_path / "Appliance-1").exists()
    assert agent_cert_paths(creds.ca_cert.parent) == []


@pytest.mark.parametrize("name", ["../ca", "a/b", ""])
def test_an_agent_certificate_is_never_written_outside_the_agents_dir(
    creds: ApplianceCredentials, name: str
) -> None:
    before = creds.ca_cert.read_bytes()
    with pytest.raises(PkiError, match="identity name"):
        write_agent_cert(creds.ca_cert.parent, name, b"not the CA")
    assert creds.ca_cert.read_bytes() == before
