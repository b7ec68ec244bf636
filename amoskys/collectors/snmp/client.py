"""SnmpClient: the one pysnmp engine, and GET / GETBULK requests to one target, as Python values.

pysnmp 7's asyncio API (``pysnmp.hlapi.v3arch.asyncio``) with no MIB resolution anywhere: responses
are read with ``lookupMib=False`` and requests are numeric OIDs that skip pysnmp's MIB view (its
per-var-bind label lookup costs ~0.25 ms). Values come back as int, bytes, dotted-OID str, or
`walk.END`. Every failure is an `SnmpPollError` naming the target and address, never a secret.
"""

from __future__ import annotations

import asyncio
import socket
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

with warnings.catch_warnings():
    # pysnmp imports pysmi's old names when pysmi is installed (snmpsim brings it into dev venvs)
    warnings.filterwarnings("ignore", r"(getReadersFromUrls|smiV1Relaxed) is deprecated", DeprecationWarning)
    from pysnmp.carrier.asyncio.dgram import udp, udp6
    from pysnmp.carrier.error import CarrierError
    from pysnmp.error import PySnmpError
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        SnmpEngine,
        Udp6TransportTarget,
        UdpTransportTarget,
        UsmUserData,
        bulk_cmd,
        get_cmd,
    )
    from pysnmp.hlapi.v3arch.asyncio import auth as hlauth
    from pysnmp.proto import errind, rfc1902, rfc1905
    from pysnmp.smi.rfc1902 import ObjectType

from amoskys.collectors.snmp.config import SnmpTargetConfig
from amoskys.collectors.snmp.credentials import Secret, SecretError, read_secret
from amoskys.collectors.snmp.errors import Reason, SnmpPollError
from amoskys.collectors.snmp.oids import Oid
from amoskys.collectors.snmp.walk import END

AUTH_PROTOCOLS = {
    "sha1": hlauth.USM_AUTH_HMAC96_SHA,
    "sha224": hlauth.USM_AUTH_HMAC128_SHA224,
    "sha256": hlauth.USM_AUTH_HMAC192_SHA256,
    "sha384": hlauth.USM_AUTH_HMAC256_SHA384,
    "sha512": hlauth.USM_AUTH_HMAC384_SHA512,
}
PRIV_PROTOCOLS = {
    "aes128": hlauth.USM_PRIV_CFB128_AES,
    "aes192": hlauth.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "aes256": hlauth.USM_PRIV_CFB256_AES_BLUMENTHAL,
    "aes192c": hlauth.USM_PRIV_CFB192_AES,
    "aes256c": hlauth.USM_PRIV_CFB256_AES,
}
USM_MIN_KEY_CHARS = 8  # RFC 3414 §11.2: shorter pass phrases are refused by agents

#: pysnmp error indications that mean the v3 credentials are wrong, with what to check.
_AUTH_FAILURES: dict[type[errind.ErrorIndication], str] = {
    errind.UnknownUserName: "unknown user (check `user`)",
    errind.WrongDigest: "authentication failed: wrong auth key or auth protocol",
    errind.AuthenticationFailure: "authentication failed: wrong auth key or auth protocol",
    errind.DecryptionError: "decryption failed: wrong priv key or priv protocol",
    errind.UnsupportedSecurityLevel: "the agent refuses this security level for the user",
    errind.UnknownCommunityName: "the agent does not know this community",
}


class _NumericVarBind(ObjectType):  # type: ignore[misc]  # pysnmp ships no types: ObjectType is Any
    """A request var-bind by numeric OID that pysnmp sends as it is, without resolving it in a MIB."""

    def __init__(self, name: Oid) -> None:  # no super().__init__: nothing here is MIB-resolved
        self._pair = (rfc1902.ObjectName(name), univ.Null(""))

    def __getitem__(self, i: int) -> Any:
        return self._pair[i]

    def resolve_with_mib(self, *args: object, **kwargs: object) -> _NumericVarBind:
        return self

    def __repr__(self) -> str:
        return f"_NumericVarBind({self._pair[0]})"


def python_value(value: Any) -> object:
    """A response value as a Python value: int, bytes, dotted-OID str, `END`, or None (Null)."""
    if isinstance(value, univ.Integer):  # Integer32, Counter32/64, Gauge32, TimeTicks, Unsigned32
        return int(value)
    if isinstance(value, univ.OctetString):  # also IpAddress, Opaque
        return value.asOctets()
    if isinstance(value, univ.ObjectIdentifier):
        return ".".join(map(str, value.asTuple()))
    if isinstance(value, (rfc1905.EndOfMibView, rfc1905.NoSuchObject, rfc1905.NoSuchInstance)):
        return END
    return None


def _require_length(target: str, what: str, secret: Secret) -> Secret:
    if len(secret.value) < USM_MIN_KEY_CHARS:
        raise SecretError(
            target, what, f"the key from {secret.origin} is shorter than {USM_MIN_KEY_CHARS} characters"
        )
    return secret


def auth_data(target: SnmpTargetConfig, environ: Mapping[str, str]) -> CommunityData | UsmUserData:
    """pysnmp credentials for `target`, with its secrets read now (raises SecretError)."""
    name = target.name
    if target.version == "v2c":
        community = read_secret(
            name, "community", file=target.community_file, env=target.community_env, environ=environ
        )
        # The community index (and security name) is the target's name, so no secret is a table key;
        # the tag binds the community to this target's address (`Session.tag`): pysnmp maps a response's
        # community back to a security name, and targets sharing a community would be ambiguous.
        return CommunityData(f"amoskys-{name}", community.value, mpModel=1, tag=f"amoskys-{name}")
    auth = _require_length(
        name,
        "auth_key",
        read_secret(name, "auth_key", file=target.auth_key_file, env=target.auth_key_env, environ=environ),
    )
    if target.security_level == "auth_no_priv":
        return UsmUserData(target.user, auth.value, authProtocol=AUTH_PROTOCOLS[target.auth_protocol])
    priv = _require_length(
        name,
        "priv_key",
        read_secret(name, "priv_key", file=target.priv_key_file, env=target.priv_key_env, environ=environ),
    )
    return UsmUserData(
        target.user,
        auth.value,
        priv.value,
        authProtocol=AUTH_PROTOCOLS[target.auth_protocol],
        privProtocol=PRIV_PROTOCOLS[target.priv_protocol],
    )


@dataclass
class Session:
    """One target as the client addresses it: credentials, timeouts, and the resolved transport."""

    name: str
    endpoint: str
    address: str
    port: int
    auth: CommunityData | UsmUserData
    timeout_seconds: float
    retries: int
    context: ContextData
    timeout_hint: str = ""  # added to "no response" messages: what else goes unanswered
    transport: UdpTransportTarget | Udp6TransportTarget | None = None
    answered: bool = False  # the agent answered at least once during this poll

    def fail(self, message: str, reason: Reason, status: int = 0) -> SnmpPollError:
        return SnmpPollError(self.name, self.endpoint, message, reason=reason, status=status)


#: The pysnmp MIB modules its request set-up (``lcd.configure``: community or USM user, target
#: address and params, VACM) and its response processing import beyond those ``SnmpEngine()`` loads: Python files read from
#: site-packages, loaded in a worker thread before the engine's first request (see ``_load_mibs``).
REQUEST_MIB_MODULES = (
    "SNMP-COMMUNITY-MIB",
    "SNMP-TARGET-MIB",
    "PYSNMP-SOURCE-MIB",
    "SNMPv2-TM",
    "TRANSPORT-ADDRESS-MIB",
    "SNMP-VIEW-BASED-ACM-MIB",
    "SNMP-USER-BASED-SM-MIB",
    "PYSNMP-USM-MIB",
    "__PYSNMP-USM-MIB",
    # and those its message processing imports when a response arrives (in a datagram callback)
    "__SNMP-MPD-MIB",
    "__SNMP-TARGET-MIB",
    "__SNMP-USER-BASED-SM-MIB",
    "__SNMP-VIEW-BASED-ACM-MIB",
    "__SNMPv2-MIB",
)


class SnmpClient:
    """The one SNMP engine of a collector (or a CLI run). Create it inside the running event loop."""

    def __init__(self) -> None:
        self.engine = SnmpEngine()
        self._mibs_loaded: asyncio.Future[None] | None = None

    async def _load_mibs(self) -> None:
        """Load REQUEST_MIB_MODULES once, in a worker thread: pysnmp would otherwise list and read
        its MIB folder on the event loop at a target's first request. The engine is idle meanwhile
        (no request starts before this returns), so its MIB builder is not shared across threads."""
        if self._mibs_loaded is None:
            builder = self.engine.get_mib_builder()
            self._mibs_loaded = asyncio.ensure_future(
                asyncio.to_thread(builder.load_modules, *REQUEST_MIB_MODULES)
            )
        await asyncio.shield(self._mibs_loaded)

    def close(self) -> None:
        """Close the engine's socket and timers."""
        self.engine.close_dispatcher()

    async def aclose(self) -> None:
        """Stop reading, let the responses already read run their callbacks, then close: pysnmp raises
        "Unregistered transport" from a callback that runs after its dispatcher closed."""
        dispatcher = self.engine.transport_dispatcher
        for domain in (udp.DOMAIN_NAME, udp6.DOMAIN_NAME):
            try:
                carrier = dispatcher.get_transport(domain) if dispatcher is not None else None
            except CarrierError:  # that transport was never opened
                continue
            if carrier is not None and carrier.transport is not None:
                carrier.transport.close()  # asyncio stops reading the socket at once
        for _ in range(3):
            await asyncio.sleep(0)
        self.close()

    async def _transport(self, session: Session) -> UdpTransportTarget | Udp6TransportTarget:
        await self._load_mibs()
        if session.transport is None:
            cls = Udp6TransportTarget if ":" in session.address else UdpTransportTarget
            try:
                session.transport = await cls.create(
                    (session.address, session.port),
                    timeout=session.timeout_seconds,
                    retries=session.retries,
                    tagList=f"amoskys-{session.name}",
                )
            except (PySnmpError, socket.gaierror, OSError) as err:
                raise session.fail(f"cannot resolve address: {err}", "resolve") from None
        return session.transport

    def _check(self, session: Session, indication: Any, status: Any, index: Any, sent: int) -> None:
        if indication:
            if isinstance(indication, errind.RequestTimedOut):
                waited = session.timeout_seconds * (session.retries + 1)
                raise session.fail(f"no response after {waited:g} s{session.timeout_hint}", "timeout")
            for kind, text in _AUTH_FAILURES.items():
                if isinstance(indication, kind):
                    raise session.fail(text, "auth")
            raise session.fail(f"request failed: {indication}", "error")
        session.answered = True
        if status:
            where = f" at var-bind {int(index)} of {sent}" if index else ""
            raise session.fail(f"agent answered {status.prettyPrint()}{where}", "error", int(status))

    async def get(self, session: Session, names: Sequence[Oid]) -> dict[Oid, object]:
        """GET `names`; missing objects come back as `END`."""
        transport = await self._transport(session)
        try:
            indication, status, index, varbinds = await get_cmd(
                self.engine,
                session.auth,
                transport,
                session.context,
                *(_NumericVarBind(n) for n in names),
                lookupMib=False,
            )
        except (PySnmpError, PyAsn1Error, OSError) as err:  # OSError: the send itself failed
            raise session.fail(f"GET failed: {err}", "error") from None
        self._check(session, indication, status, index, len(names))
        return {tuple(name): python_value(value) for name, value in varbinds}

    async def bulk(
        self, session: Session, non_repeaters: Sequence[Oid], repeaters: Sequence[Oid], max_repetitions: int
    ) -> list[tuple[Oid, object]]:
        """One GETBULK; the var-binds in wire order (non-repeaters first, then row by row)."""
        transport = await self._transport(session)
        try:
            indication, status, index, varbinds = await bulk_cmd(
                self.engine,
                session.auth,
                transport,
                session.context,
                len(non_repeaters),
                max_repetitions,
                *(_NumericVarBind(n) for n in (*non_repeaters, *repeaters)),
                lookupMib=False,
            )
        except (PySnmpError, PyAsn1Error, OSError) as err:  # OSError: the send itself failed
            raise session.fail(f"GETBULK failed: {err}", "error") from None
        self._check(session, indication, status, index, len(non_repeaters) + len(repeaters))
        return [(tuple(name), python_value(value)) for name, value in varbinds]


def session_for(
    target: SnmpTargetConfig,
    auth: CommunityData | UsmUserData,
    *,
    timeout_seconds: float,
    retries: int,
) -> Session:
    return Session(
        name=target.name,
        endpoint=target.endpoint,
        address=target.address,
        port=target.port,
        auth=auth,
        timeout_seconds=timeout_seconds,
        retries=retries,
        context=ContextData(contextName=target.context_name.encode()),
        timeout_hint=(
            " (a wrong priv key or priv protocol also goes unanswered)"
            if target.version == "v3" and target.security_level == "auth_priv"
            else ""
        ),
    )
