"""The dashboard's reads through HTTP: bounded SNMP pages for a 50k-interface target, flow search and top
talkers from the read model, and load shedding (503 + Retry-After) when every read slot is taken."""

from __future__ import annotations

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record

from web_harness import VIEWER_PASSWORD, Web


def _flow(stamper: EnvelopeStamper, src: str, dst: str, octets: int) -> Record:
    body = ev.FlowRecord(
        src_addr=src,
        dst_addr=dst,
        src_port=40000,
        dst_port=443,
        protocol=6,
        forward=ev.FlowDirection(packets=1, octets=octets),
        community_id="1:x",
    )
    return Record.from_envelope(stamper.stamp(ev.Envelope(flow=body)))


async def test_the_snmp_page_of_a_50k_interface_agent_is_bounded(web: Web) -> None:
    stamper = EnvelopeStamper("agent-9")
    interfaces = [
        ev.SnmpInterface(if_index=i, name=f"Gi0/{i}", alias="uplink " * 4, in_octets=i)
        for i in range(1, 50_001)
    ]
    sample = ev.SnmpSample(target="core-sw", address="192.0.2.1", reachable=True, interfaces=interfaces)
    await web.ctx.store.submit([Record.from_envelope(stamper.stamp(ev.Envelope(snmp=sample)))])
    c, _ = await web.login("viewer", VIEWER_PASSWORD)

    r = await c.get("/snmp")
    assert r.status_code == 200
    assert r.text.count('class="chart-link"') == 100  # one page of interfaces, not 50,000 rows
    assert len(r.content) < 200_000 and 'id="more-ifs"' in r.text

    api = await c.get("/api/v1/snmp/targets/core-sw/interfaces", params={"limit": 500})
    page = api.json()
    assert len(page["items"]) == 500 and page["next"] == {"after_source": "agent-9", "after": 500}
    nxt = await c.get("/api/v1/snmp/targets/core-sw/interfaces", params=page["next"] | {"limit": 500})
    assert [i["if_index"] for i in nxt.json()["items"]] == list(range(501, 1001))
    rates = await c.get("/api/v1/snmp/targets/core-sw/rates", params={"if_index": 7})
    assert rates.status_code == 200 and rates.json()["points"] == []  # no second poll: no rate yet


async def test_flow_search_and_top_talkers_come_from_the_read_model(web: Web) -> None:
    stamper = EnvelopeStamper("sensor")
    await web.ctx.store.submit(
        [
            _flow(stamper, "10.0.0.1", "10.0.0.2", 100),
            _flow(stamper, "10.0.0.3", "10.0.0.1", 50),
            _flow(stamper, "10.0.0.3", "10.0.0.4", 10),
        ]
    )
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    found = (await c.get("/api/v1/flows", params={"ip": "10.0.0.1", "limit": 1})).json()
    assert [i["body"]["src_addr"] for i in found["items"]] == ["10.0.0.3"]
    older = (await c.get("/api/v1/flows", params={"ip": "10.0.0.1", "before": found["next_before"]})).json()
    assert [i["body"]["src_addr"] for i in older["items"]] == ["10.0.0.1"] and older["next_before"] is None
    top = (await c.get("/api/v1/flows/top")).json()
    assert top["items"][:2] == [
        {"addr": "10.0.0.1", "octets": 150, "packets": 2},
        {"addr": "10.0.0.2", "octets": 100, "packets": 1},
    ]
    page = await c.get("/flows", params={"ip": "10.0.0.3"})
    source_cell = '<td class="src card-line"><span class="tok"><a class="addr" href="/flows?ip=10.0.0.3"'
    sources = page.text.count(source_cell)
    assert page.status_code == 200 and sources == 2


async def test_reads_are_shed_with_503_when_every_slot_is_taken(web: Web) -> None:
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    reader = web.ctx.reads
    for _ in range(reader.max_concurrent):  # hold every read slot, as slow reads in progress would
        await reader.slots.acquire()
    try:
        for path in ("/api/v1/flows", "/api/v1/events", "/api/v1/snmp/targets", "/flows"):
            r = await c.get(path)
            assert r.status_code == 503, path
            assert r.headers["retry-after"] == "1"
    finally:
        for _ in range(reader.max_concurrent):
            reader.slots.release()
    assert (await c.get("/api/v1/flows")).status_code == 200
    metrics = (await c.get("/metrics")).text
    assert "amoskys_web_requests_shed_total 4.0" in metrics


async def test_the_process_table_search_matches_exe_user_and_the_command_line(web: Web) -> None:
    stamper = EnvelopeStamper("host-1")
    procs = [
        (10, "/usr/sbin/sshd", ["sshd", "-D"], "root"),
        (11, "/bin/ls", ["ls", "-la", "/tmp"], "alice"),
        (12, "/usr/bin/python3", ["python3", "-m", "http.server"], "Bob"),
    ]
    await web.ctx.store.submit(
        [
            Record.from_envelope(
                stamper.stamp(
                    ev.Envelope(
                        process=ev.ProcessEvent(
                            kind=ev.ProcessEvent.SNAPSHOT, pid=pid, ppid=1, exe=exe, argv=argv, user=user
                        )
                    )
                )
            )
            for pid, exe, argv, user in procs
        ]
    )
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    for q in ("", "LS -LA", "bob", "sbin", "-m http", "nothing-like-this"):
        want = [
            pid
            for pid, exe, argv, user in procs
            if q.lower() in exe.lower() or q.lower() in " ".join(argv).lower() or q.lower() in user.lower()
        ]
        got = (await c.get("/api/v1/processes", params={"q": q, "source": "host-1"})).json()
        assert [r["pid"] for r in got["items"]] == want and got["total"] == len(want), q
        assert all(isinstance(r["argv"], list) for r in got["items"])
