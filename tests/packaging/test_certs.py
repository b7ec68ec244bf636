"""certs/README.md's promise: no certificate or private key is ever in the source tree."""

from __future__ import annotations

import re
import subprocess

from support import ROOT

#: A PEM block of a key or certificate with a base64 body (the appliance writes PKCS8, SEC1 and X.509
#: PEM files); a test's deliberately broken "certificate" has none.
PEM = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY|CERTIFICATE)-----\r?\n(?:[A-Za-z0-9+/=]{16,}\r?\n)+-----END "
)


def test_no_certificate_or_private_key_is_in_the_tree() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    files = [ROOT / name.decode() for name in listed.split(b"\0") if name]
    assert len(files) > 100  # the tree was listed
    found = [str(f.relative_to(ROOT)) for f in files if f.is_file() and PEM.search(f.read_bytes())]
    assert found == []


def test_git_ignores_everything_in_certs_but_its_readme() -> None:
    probe = ["certs/ca.key", "certs/server.crt", "certs/pki/identity.ed25519", "certs/README.md"]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *probe], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.split() == probe[:3]
