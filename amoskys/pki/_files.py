"""How the PKI modules read and write their files: atomically, with the modes of the PKI dir."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.errors import PkiError
from amoskys.files import write_atomic

KEY_MODE = 0o600
CERT_MODE = 0o600  # public, but nothing in a data dir is readable by other users
DIR_MODE = 0o700


def write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically with `mode`; PkiError naming the file on failure."""
    try:
        write_atomic(path, data, mode)
    except OSError as err:
        raise PkiError(f"{path}: cannot write: {err.strerror or err}", path=str(path)) from err


def ensure_dir(path: Path) -> None:
    """Create `path` (mode 0700) when missing; an existing directory is left as it is."""
    try:
        if not path.is_dir():
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            path.chmod(DIR_MODE)
    except OSError as err:
        raise PkiError(f"{path}: cannot create directory: {err.strerror or err}", path=str(path)) from err


def read(path: Path) -> bytes:
    """The bytes of `path`; PkiError naming the file when unreadable."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise PkiError(f"{path}: cannot read: {err.strerror or err}", path=str(path)) from err


def key_pem(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    """`key` as unencrypted PKCS8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
