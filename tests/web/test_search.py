"""Global search over the read model (/api/v1/search and the /search page): an IP, a MAC, a process by
name, a user, a host name and a Community ID each find what the store holds about them, across kinds."""

from __future__ import annotations

import time
from urllib.parse import quote

from amoskys.community_id import community_id_of
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record

from web_harness import VIEWER_PASSWORD, Web

NOW = time.time_ns()
MAC = bytes.fromhex("3c2af4a1b2c3")
CID = community_id_of("10.0.0.1", "10.0.0.2", 6, 40000, 443)


def _rec(stamper: EnvelopeStamper, env: ev.Envelope, ts_ns: int = NOW) -> Record:
    return Record.from_envelope(stamper.stamp(env, ts_ns=ts_ns))


async def seed(web: Web) -> None:
    """A host (its heartbeat names 10.0.0.1), a LAN device at 10.0.0.2, a flow between them, an exec of
    curl by alice and a running sshd."""
    host = EnvelopeStamper("ws-agent")
    sensor = EnvelopeStamper("sensor")
    flow = ev.FlowRecord(
        src_addr="10.0.0.1",
        dst_addr="10.0.0.2",
        src_port=40000,
        dst_port=443,
        protocol=6,
        forward=ev.FlowDirection(packets=12, octets=3_400),
        reverse=ev.FlowDirection(packets=10, octets=52_000),
        first_ts_ns=NOW - 2_500_000_000,
        last_ts_ns=NOW,
        final=True,
        end_reason=ev.END_OF_FLOW,
        community_id=CID,
    )
    await web.ctx.store.submit(
        [
            _rec(
                host,
                ev.Envelope(
                    heartbeat=ev.Heartbeat(hostname="Workstation-7", mode="agent", addresses=["10.0.0.1"])
                ),
            ),
            _rec(
                sensor,
                ev.Envelope(
                    device=ev.DeviceEvent(
                        change=ev.DeviceEvent.NEW,
                        ip="10.0.0.2",
                        mac=MAC,
                        vendor="Hewlett Packard",
                        hostname="printer-3",
                    )
                ),
            ),
            _rec(sensor, ev.Envelope(flow=flow)),
            _rec(
                host,
                ev.Envelope(
                    process=ev.ProcessEvent(
                        kind=ev.ProcessEvent.EXEC,
                        pid=4242,
                        ppid=1,
                        exe="/usr/bin/curl",
                        argv=["curl", "-s", "https://example.org/"],
                        user="alice",
                    )
                ),
            ),
            _rec(
                host,
                ev.Envelope(
                    process=ev.ProcessEvent(
                        kind=ev.ProcessEvent.SNAPSHOT,
                        pid=77,
                        ppid=1,
                        exe="/usr/sbin/sshd",
                        argv=["sshd", "-D"],
                        user="root",
                    )
                ),
            ),
        ]
    )


async def test_search_finds_an_ip_across_devices_hosts_and_flows(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    found = (await c.get("/api/v1/search", params={"q": " 10.0.0.2 "})).json()
    assert found["as"] == "ip"
    assert [(d["ip"], d["mac"], d["hostname"]) for d in found["devices"]] == [
        ("10.0.0.2", "3c:2a:f4:a1:b2:c3", "printer-3")
    ]
    assert [f["body"]["community_id"] for f in found["flows"]] == [CID]
    # the flow's ends are named: the device at 10.0.0.2, the host whose heartbeat reports 10.0.0.1
    assert found["names"]["10.0.0.2"]["device"]["hostname"] == "printer-3"
    assert found["names"]["10.0.0.1"]["host"] == {"source": "ws-agent", "hostname": "Workstation-7"}
    by_host = (await c.get("/api/v1/search", params={"q": "10.0.0.1"})).json()
    assert [h["source"] for h in by_host["hosts"]] == ["ws-agent"] and not by_host["devices"]
    assert (await c.get("/api/v1/search", params={"q": "10.9.9.9"})).json()["flows"] == []


async def test_search_finds_a_mac_in_any_spelling(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    for spelling in ("3c:2a:f4:a1:b2:c3", "3C-2A-F4-A1-B2-C3", "3c2af4a1b2c3"):
        found = (await c.get("/api/v1/search", params={"q": spelling})).json()
        assert found["as"] == "mac", spelling
        assert [d["ip"] for d in found["devices"]] == ["10.0.0.2"], spelling


async def test_search_finds_a_process_by_name_in_the_exec_history_and_the_table(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    curl = (await c.get("/api/v1/search", params={"q": "curl"})).json()
    assert curl["as"] == "text"
    assert [(e["body"]["pid"], e["body"]["user"]) for e in curl["execs"]] == [(4242, "alice")]
    sshd = (await c.get("/api/v1/search", params={"q": "SSHD"})).json()
    assert [p["pid"] for p in sshd["processes"]] == [77] and sshd["processes"][0]["argv"] == ["sshd", "-D"]


async def test_search_finds_a_user_a_host_name_and_a_community_id(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    alice = (await c.get("/api/v1/search", params={"q": "alice"})).json()
    assert [e["body"]["exe"] for e in alice["execs"]] == ["/usr/bin/curl"]
    assert [p["pid"] for p in alice["processes"]] == [4242]  # an exec enters the process table too
    root = (await c.get("/api/v1/search", params={"q": "root"})).json()
    assert [p["exe"] for p in root["processes"]] == ["/usr/sbin/sshd"]
    ws = (await c.get("/api/v1/search", params={"q": "workstation"})).json()
    assert [h["source"] for h in ws["hosts"]] == ["ws-agent"]
    sensor = (await c.get("/api/v1/search", params={"q": "SENS"})).json()  # no heartbeat: found by name
    assert [h["source"] for h in sensor["hosts"]] == ["sensor"]
    printer = (await c.get("/api/v1/search", params={"q": "printer"})).json()
    assert [d["ip"] for d in printer["devices"]] == ["10.0.0.2"]
    by_cid = (await c.get("/api/v1/search", params={"q": CID})).json()
    assert by_cid["as"] == "community_id" and [f["body"]["dst_port"] for f in by_cid["flows"]] == [443]
    too_long = await c.get("/api/v1/search", params={"q": "x" * 201})
    assert too_long.status_code == 400 and "'q'" in too_long.json()["error"]


async def test_the_search_page_links_every_match(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    page = await c.get("/search", params={"q": "10.0.0.2"})
    assert page.status_code == 200
    html = page.text
    assert 'id="search-devices"' in html and 'id="search-flows"' in html
    assert 'href="/devices/3c%3A2a%3Af4%3Aa1%3Ab2%3Ac3"' in html  # the MAC: its device page
    assert 'href="/hosts/ws-agent"' in html  # the host behind the flow's other end: its host page
    assert f'href="/flows?community_id={quote(CID, safe="/")}"' in html
    empty = await c.get("/search")
    assert empty.status_code == 200 and 'id="search-as"' not in empty.text
    # the header's search box is on every page
    assert 'id="global-search"' in (await c.get("/devices")).text
