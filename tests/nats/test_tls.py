"""The NATS connection over mutual TLS (amoskys/nats/connection.py): the forwarder verifies the server
with `tls_ca` and presents `tls_cert`/`tls_key` to a nats-server that requires client certificates
(certificates from amoskys.pki, files read off the loop)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from nats_harness import forwarding, msg_ids, nats_server, outbox, read_stream, records, submit

from amoskys.metrics import Metrics
from amoskys.nats.connection import NatsConnectError, connect
from amoskys.pki.issuance import ensure_appliance_pki

from support import eventually


def pki(tmp: Path):  # type: ignore[no-untyped-def]
    return ensure_appliance_pki(
        tmp / "pki",
        name="natsbox",
        trust_domain="amoskys.local",
        dns_names=("localhost",),
        ip_addresses=("127.0.0.1",),
    )


async def test_the_forwarder_publishes_over_mutual_tls(tmp_path: Path) -> None:
    creds = await asyncio.to_thread(pki, tmp_path)  # file I/O: off the loop
    server_tls = (
        f'tls {{\n  cert_file: "{creds.server_cert}"\n  key_file: "{creds.server_key}"\n'
        f'  ca_file: "{creds.ca_cert}"\n  verify: true\n}}\n'
    )
    metrics = Metrics()
    async with (
        nats_server(tmp_path / "nats", config_text=server_tls) as server,
        outbox(tmp_path / "box.db", metrics) as store,
    ):
        url = f"tls://127.0.0.1:{server.port}"
        await submit(store, records("agent-1", 100))
        keys = {
            "tls_ca": str(creds.ca_cert),
            "tls_cert": str(creds.identity_cert),
            "tls_key": str(creds.identity_cert_key),
        }
        async with forwarding(store, metrics, url, **keys) as run:
            await eventually(
                lambda: run.forwarder.acked_seq == store.last_seq, within=20, what="every row acked"
            )
        context = ssl.create_default_context(cafile=str(creds.ca_cert))
        context.load_cert_chain(str(creds.identity_cert), str(creds.identity_cert_key))
        contents = await read_stream(url, tls=context)
    assert set(contents.ids) == msg_ids("agent-1", 100) and not contents.duplicates


async def test_an_unreadable_tls_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(NatsConnectError) as caught:
        await connect("tls://127.0.0.1:1", tls_ca=str(missing), name="t")
    assert caught.value.path == str(missing) and "nope.pem" in str(caught.value)
