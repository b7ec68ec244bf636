"""Password hashes (hashlib.scrypt, computed off the event loop) and random secrets."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets

# scrypt cost: n=2**14, r=8, p=1 — 16 MiB and ~40 ms on this kind of machine, per attempt
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # logins refuse longer ones unhashed (amoskys.web.auth)


def new_password_problem(password: str) -> str:
    """Why a new password is refused ("" when it is fine): the one rule for the CLI, the API and
    the dashboard."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"password: {MIN_PASSWORD_CHARS} characters at least (got {len(password)})"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"password: {MAX_PASSWORD_CHARS} characters at most (logins refuse longer ones)"
    return ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hash_sync(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=_DKLEN
    )


def hash_password_sync(password: str) -> str:
    """An encoded scrypt hash: ``scrypt$n$r$p$salt$hash`` (salt and hash base64)."""
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(_hash_sync(password, salt, _N, _R, _P))}"


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


def _verify_sync(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = _hash_sync(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


async def verify_password(password: str, encoded: str) -> bool:
    """Check a password against its hash in a worker thread (never on the loop)."""
    return await asyncio.to_thread(_verify_sync, password, encoded)


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password nobody knows: verified against when the user does not exist, so
    an unknown user costs the same time as a wrong password."""
    return hash_password_sync(secrets.token_urlsafe(16))


def new_password() -> str:
    return secrets.token_urlsafe(18)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What is stored for a session or API token: its SHA-256 (the token itself never is)."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()
