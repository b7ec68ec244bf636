"""Where the appliance's PKI files live.

Files in the appliance's PKI dir (mode 0700; keys and certificates 0600)::

    ca.crt  ca.key            private CA (ECDSA P-256, 10 years) — signs every TLS certificate below
    server.crt  server.key    the bus server certificate (P-256, 397 days, SANs from config, serverAuth)
    identity.ed25519          the appliance's own Ed25519 identity (PKCS8 PEM) — signs batches
    client.crt  client.key    a client certificate for the appliance itself (URI SAN = its identity,
                              clientAuth), so it can publish to an upstream bus as a relay
    agents/<name>.crt         the certificate of each enrolled agent (``amoskys.pki.enrolment``)

An enrolment bundle holds ``client.crt``, ``client.key``, ``identity.ed25519``, ``ca.crt`` and
``bundle.json`` (name, role, bus_address, trust_domain, key_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
IDENTITY_KEY = "identity.ed25519"
CLIENT_CERT = "client.crt"
CLIENT_KEY = "client.key"
BUNDLE_JSON = "bundle.json"


@dataclass(frozen=True)
class ApplianceCredentials:
    """Paths of the appliance's PKI files, and what the call that returned them created."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    identity_key: Path
    """The appliance's own Ed25519 private key (PEM, PKCS8): it signs the batches it relays upstream."""
    identity_cert: Path
    identity_cert_key: Path
    """A client certificate (URI SAN = the appliance's identity) and its key, to publish upstream."""
    created: tuple[str, ...] = ()
    """What this call wrote (file names, re-issues with the reason); empty when everything existed."""

    @classmethod
    def in_dir(cls, pki_dir: Path, created: tuple[str, ...] = ()) -> ApplianceCredentials:
        """The standard file layout inside `pki_dir` (see the module docstring)."""
        return cls(
            ca_cert=pki_dir / CA_CERT,
            ca_key=pki_dir / CA_KEY,
            server_cert=pki_dir / SERVER_CERT,
            server_key=pki_dir / SERVER_KEY,
            identity_key=pki_dir / IDENTITY_KEY,
            identity_cert=pki_dir / CLIENT_CERT,
            identity_cert_key=pki_dir / CLIENT_KEY,
            created=created,
        )
