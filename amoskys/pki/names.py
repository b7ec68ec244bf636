"""Identity names and identity URIs, and the identity grpc reports for an mTLS peer.

Identities live in a URI SAN, ``spiffe://<trust-domain>/agent/<name>``. grpc exposes it in
``context.auth_context()`` (a ``dict[str, list[bytes]]``) under ``"peer_spiffe_id"`` (only when the
certificate carries exactly one URI SAN, a valid SPIFFE ID), ``"peer_uri"`` (every URI SAN) and
``"x509_subject_alternative_name"`` (every SAN, of every type, as text; also what
``context.peer_identity_key()`` names, so ``context.peer_identities()`` returns the same list).
``PEER_IDENTITY_KEYS`` lists them in the order ``peer_identity`` consults them (verified with grpcio
1.85 by tests/pki/test_mtls.py). Only a handshake that verified the client certificate against the
configured CA reaches Python at all; a missing, expired or foreign certificate fails the handshake and
the client sees UNAVAILABLE. Nothing here parses a certificate: grpc has done that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

from amoskys.errors import PkiError

IDENTITY_URI = "spiffe://{trust_domain}/agent/{name}"
"""Template of an identity URI; it is carried in the URI SAN of every client certificate."""

PEER_IDENTITY_KEYS: tuple[str, ...] = ("peer_spiffe_id", "peer_uri", "x509_subject_alternative_name")
"""``context.auth_context()`` keys under which grpc (1.85, BoringSSL) exposes a peer's URI SANs."""

#: agent: publishes its own events; relay: may also forward others' events; loadgen: publishes only
#: synthetic events (`amoskys loadgen`), which the bus marks as such when it stores them.
Role = Literal["agent", "relay", "loadgen"]
ROLES: tuple[str, ...] = ("agent", "relay", "loadgen")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,253}[a-z0-9])?")


def is_valid_name(name: str) -> bool:
    """Whether `name` can be an identity name (1–64 of ``[A-Za-z0-9._-]``, starting alphanumeric)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def validate_name(name: str) -> str:
    """Return `name` if it can be an identity name (1–64 of ``[A-Za-z0-9._-]``, starting alphanumeric)."""
    return _matching(
        name,
        _NAME_RE,
        what="identity name",
        expected="1–64 characters of [A-Za-z0-9._-], starting with a letter or digit",
    )


def same_name(a: str, b: str) -> bool:
    """Whether two identity names are the same name: compared ignoring case, so that `Edge-1` can
    never pass for `edge-1` on a page or in a log."""
    return a.lower() == b.lower()


def validate_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` if it is a valid SPIFFE trust domain (lowercase ``[a-z0-9._-]``)."""
    return _matching(
        trust_domain,
        _TRUST_DOMAIN_RE,
        what="trust domain",
        expected="lowercase letters, digits, '.', '-' or '_', starting and ending with a letter or digit",
    )


def _matching(value: str, pattern: re.Pattern[str], *, what: str, expected: str) -> str:
    """Return `value` if it is a string `pattern` matches whole; else PkiError naming `what` was wrong."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise PkiError(f"{what} {value!r} is not valid: expected {expected}")
    return value


def identity_uri(trust_domain: str, name: str) -> str:
    """The identity URI of `name` in `trust_domain` (``spiffe://<trust-domain>/agent/<name>``)."""
    return IDENTITY_URI.format(trust_domain=validate_trust_domain(trust_domain), name=validate_name(name))


def identity_from_uri(uri: str, trust_domain: str) -> str | None:
    """The identity name in `uri`, or None when it is not an agent identity of `trust_domain`."""
    prefix = f"spiffe://{trust_domain}/agent/"
    if not isinstance(uri, str) or not uri.startswith(prefix):
        return None
    name = uri[len(prefix) :]
    return name if _NAME_RE.fullmatch(name) else None


def peer_identity(auth_context: Mapping[str, Iterable[bytes]], trust_domain: str) -> str | None:
    """The identity name of a grpc peer from ``context.auth_context()``, or None.

    The keys of ``PEER_IDENTITY_KEYS`` are consulted in order; the first that carries an identity of
    `trust_domain` decides. A certificate naming two different identities of ours is ambiguous and
    yields None (our CA never issues one).
    """
    for key in PEER_IDENTITY_KEYS:
        names: set[str] = set()
        for value in auth_context.get(key, ()):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
            name = identity_from_uri(text, trust_domain)
            if name is not None:
                names.add(name)
        if len(names) == 1:
            return names.pop()
        if len(names) > 1:
            return None
    return None
