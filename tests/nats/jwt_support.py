"""NATS decentralized auth for tests: operator, account and user NKeys and the JWTs nats-server checks
in operator mode (header.claims.signature, each part base64url without padding, signed with the
issuer's ed25519 NKey), `.creds` files, and the server config that trusts the operator."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
#: Every account limit unbounded, JetStream included (so the account may keep streams).
UNLIMITED_ACCOUNT = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
}


@dataclass(frozen=True)
class Key:
    """An NKey pair: `public` (O…, A…, U…) and the `seed` (S…) that signs."""

    pair: nkeys.KeyPair

    @property
    def public(self) -> str:
        return str(self.pair.public_key.decode())

    @property
    def seed(self) -> str:
        return str(self.pair.seed.decode())


def new_key(prefix: int) -> Key:
    """A fresh NKey of the role `prefix` (nkeys.PREFIX_BYTE_OPERATOR / _ACCOUNT / _USER)."""
    return Key(nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(issuer: Key, subject: str, name: str, nats: dict[str, Any], *, expires: int = 0) -> str:
    """A JWT of `nats` claims about `subject`, signed by `issuer` (`expires`: unix seconds, 0 never)."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public, "name": name, "sub": subject}
    if expires:
        claims["exp"] = expires
    claims["nats"] = {**nats, "version": 2}
    body = json.dumps(claims, sort_keys=True).encode()
    claims["jti"] = base64.b32encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(issuer.pair.sign(signing_input.encode()))}"


def operator_jwt(operator: Key, *, system_account: str) -> str:
    return encode(operator, operator.public, "OP", {"type": "operator", "system_account": system_account})


def account_jwt(operator: Key, account: Key, name: str, *, jetstream: bool = True) -> str:
    limits = dict(UNLIMITED_ACCOUNT)
    if not jetstream:
        for key in ("mem_storage", "disk_storage", "streams", "consumer"):
            limits[key] = 0
    nats = {"type": "account", "limits": limits, "default_permissions": {"pub": {}, "sub": {}}}
    return encode(operator, account.public, name, nats)


def user_jwt(
    account: Key,
    user: Key,
    name: str,
    *,
    pub_allow: list[str] | None = None,
    pub_deny: list[str] | None = None,
    sub_allow: list[str] | None = None,
    expires: int = 0,
) -> str:
    """A user of `account`; with no `pub_allow`/`sub_allow` it may publish/subscribe anything."""
    pub: dict[str, list[str]] = {}
    if pub_allow is not None:
        pub["allow"] = pub_allow
    if pub_deny is not None:
        pub["deny"] = pub_deny
    sub = {"allow": sub_allow} if sub_allow is not None else {}
    nats = {"type": "user", "pub": pub, "sub": sub, "subs": -1, "data": -1, "payload": -1}
    return encode(account, user.public, name, nats, expires=expires)


def write_creds(path: Path, jwt: str, user: Key) -> Path:
    """A `.creds` file as `nsc generate creds` writes it."""
    path.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Trust:
    """An operator with a system account and one application account (JetStream on)."""

    operator: Key
    system: Key
    account: Key

    @classmethod
    def create(cls) -> Trust:
        return cls(
            new_key(nkeys.PREFIX_BYTE_OPERATOR),
            new_key(nkeys.PREFIX_BYTE_ACCOUNT),
            new_key(nkeys.PREFIX_BYTE_ACCOUNT),
        )

    def server_config(self) -> str:
        """nats-server config: trust the operator, accounts preloaded into the memory resolver."""
        op = operator_jwt(self.operator, system_account=self.system.public)
        sys_jwt = account_jwt(self.operator, self.system, "SYS", jetstream=False)
        app_jwt = account_jwt(self.operator, self.account, "AMOSKYS")
        return (
            f"operator: {op}\n"
            f"system_account: {self.system.public}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {self.system.public}: {sys_jwt}\n"
            f"  {self.account.public}: {app_jwt}\n"
            "}\n"
        )

    def user_creds(self, path: Path, name: str, **permissions: Any) -> Path:
        """A new user of the application account (see `user_jwt`) in a `.creds` file at `path`."""
        user = new_key(nkeys.PREFIX_BYTE_USER)
        return write_creds(path, user_jwt(self.account, user, name, **permissions), user)
