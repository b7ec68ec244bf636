"""What each part of the PKI drags in: the batch-signature contract and the bus's verification path
never import ``cryptography.x509`` (certificates are for TLS; grpc checks them before Python sees a call).

Each check runs in a fresh interpreter, so what another test imported cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def imported_after(*modules: str) -> set[str]:
    """The modules loaded in a fresh interpreter after importing `modules`."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(result.stdout))


def test_the_batch_signature_contract_imports_no_x509() -> None:
    loaded = imported_after("amoskys.pki.signatures")

    assert "cryptography.x509" not in loaded
    assert {m for m in loaded if m.startswith("amoskys.")} == {"amoskys.pki", "amoskys.pki.signatures"}, (
        "the signature contract stands alone: amoskys.pki and its submodules import nothing else"
    )


@pytest.mark.parametrize(
    "module",
    [
        "amoskys.bus.auth",  # peer identity, enrolment check, batch signature, chain
        "amoskys.bus.validate",  # who may say what
        "amoskys.bus.service",  # the grpc servicer that runs them on every Publish
    ],
)
def test_the_bus_verifies_a_batch_with_the_signature_module_only(module: str) -> None:
    loaded = imported_after(module)

    assert "cryptography.x509" not in loaded
    # names: the mTLS peer identity, read from the URI SANs grpc reports (no certificate parsing)
    assert {m for m in loaded if m.startswith("amoskys.pki")} <= {
        "amoskys.pki",
        "amoskys.pki.names",
        "amoskys.pki.signatures",
    }


def test_the_bus_server_serves_mtls_without_parsing_certificates_itself() -> None:
    """grpc (BoringSSL) verifies client certificates; the server only hands it the PEM files."""
    loaded = imported_after("amoskys.bus.server")

    assert "cryptography.x509" not in loaded
    assert "amoskys.pki.issuance" not in loaded
