"""amoskys.pki.names: identity names, identity URIs and the identity of a grpc peer."""

from __future__ import annotations

import pytest
from pki_support import TD

from amoskys.errors import PkiError
from amoskys.pki.names import identity_from_uri, identity_uri, peer_identity


def test_identity_uri_round_trips_and_rejects_other_trust_domains() -> None:
    uri = identity_uri(TD, "edge-7.lab")
    assert uri == "spiffe://site1.example/agent/edge-7.lab"
    assert identity_from_uri(uri, TD) == "edge-7.lab"
    assert identity_from_uri(uri, "other.example") is None
    assert identity_from_uri("spiffe://site1.example.evil/agent/x", TD) is None
    assert identity_from_uri("spiffe://site1.example/agent/a/b", TD) is None
    assert identity_from_uri("spiffe://site1.example/agent/", TD) is None
    assert identity_from_uri("spiffe://site1.example/workload/x", TD) is None
    assert identity_from_uri("https://site1.example/agent/x", TD) is None


@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden", "x" * 65, "naïve", "a b"])
def test_identity_uri_rejects_names_that_are_not_identities(name: str) -> None:
    with pytest.raises(PkiError, match="identity name"):
        identity_uri(TD, name)


@pytest.mark.parametrize("domain", ["", "Upper.example", "a/b", "-x.example", "x.example."])
def test_identity_uri_rejects_bad_trust_domains(domain: str) -> None:
    with pytest.raises(PkiError, match="trust domain"):
        identity_uri(domain, "a")


def test_peer_identity_reads_each_key_grpc_uses_and_refuses_ambiguity() -> None:
    ours = identity_uri(TD, "a1").encode()
    assert peer_identity({"peer_spiffe_id": [ours]}, TD) == "a1"
    assert peer_identity({"peer_uri": [b"urn:x", ours]}, TD) == "a1"
    assert peer_identity({"x509_subject_alternative_name": [b"localhost", ours]}, TD) == "a1"
    assert peer_identity({"peer_uri": [ours]}, "other.example") is None
    assert peer_identity({"peer_uri": [ours, identity_uri(TD, "a2").encode()]}, TD) is None
    assert peer_identity({"x509_common_name": [b"a1"]}, TD) is None
    assert peer_identity({}, TD) is None
