"""How the tables read: flows with protocol and service names, durations, human units and the device or
host behind an address; SNMP uptime as days, hours and minutes, speeds and rates in bit/s; a one-line
summary per event kind and a typed detail page; process search over the exec history; sorting the process
table; keyset pages that keep their filters."""

from __future__ import annotations

import re

from test_search import CID, NOW, seed

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.web import format as fmt
from amoskys.web.netnames import flow_service, protocol_name

from web_harness import VIEWER_PASSWORD, Web


def test_units_people_read() -> None:
    assert fmt.uptime(0) == "0s" and fmt.uptime(4_500) == "45s" and fmt.uptime(360_000) == "1h 0m"
    assert fmt.uptime(105_084_000) == "12d 3h 54m"  # 1,050,840 s
    assert fmt.uptime(None) == "—"
    assert (
        fmt.bit_rate(1e9) == "1 Gb/s"
        and fmt.bit_rate(10e9) == "10 Gb/s"
        and fmt.bit_rate(100e6) == "100 Mb/s"
    )
    assert (
        fmt.bit_rate(2_456_000) == "2.46 Mb/s" and fmt.bit_rate(12) == "12 b/s" and fmt.bit_rate(None) == "—"
    )
    assert fmt.duration(0) == "0 s" and fmt.duration(0.00004) == "40 µs" and fmt.duration(0.25) == "250 ms"
    assert fmt.duration(2.5) == "2.5 s" and fmt.duration(303) == "5 m 3 s"
    assert fmt.duration(7_500) == "2 h 5 m" and fmt.duration(3 * 86_400 + 4 * 3600) == "3 d 4 h"
    assert protocol_name(6) == "TCP" and protocol_name(58) == "ICMPv6" and protocol_name(253) == "253"
    assert flow_service(6, 40000, 443) == "https" and flow_service(17, 53, 51000) == "domain"
    assert (
        flow_service(17, 5353, 5353) == "mdns" and flow_service(1, 8, 0) == "" and flow_service(6, 1, 2) == ""
    )
    html = str(fmt.time_html(1_700_000_000_123_000_000))
    assert (
        html
        == '<time datetime="2023-11-14T22:13:20.123Z" title="2023-11-14T22:13:20.123Z">2023-11-14 22:13:20</time>'
    )


async def test_flows_carry_protocol_service_duration_and_the_names_behind_addresses(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    page = (await c.get("/api/v1/flows")).json()
    (flow,) = page["items"]
    assert (flow["protocol_name"], flow["service"], flow["duration_seconds"]) == ("TCP", "https", 2.5)
    assert page["names"]["10.0.0.2"]["device"]["hostname"] == "printer-3"
    assert page["names"]["10.0.0.1"]["host"]["source"] == "ws-agent"

    html = (await c.get("/flows")).text
    row = html[html.index('<tr data-seq="') : html.index("</tr>", html.index('<tr data-seq="'))]
    assert '<span class="tok">TCP</span> <span class="tok service muted">https</span>' in row
    assert ">2.5 s<" in row and "3.3 KiB / 50.8 KiB" in row and ">end_of_flow<" in row
    assert 'href="/flows?ip=10.0.0.1"' in row and 'href="/hosts/ws-agent"' in row  # address, host
    assert 'href="/devices/3c%3A2a%3Af4%3Aa1%3Ab2%3Ac3"' in row and ">printer-3<" in row  # the device
    assert 'href="/flows?community_id=' in row and "<time datetime=" in row


async def test_snmp_shows_uptime_in_days_hours_minutes_speeds_and_rates(web: Web) -> None:
    stamper = EnvelopeStamper("sensor")
    sample = ev.SnmpSample(
        target="core-sw",
        address="192.0.2.1:161",
        reachable=True,
        system=ev.SnmpSystem(name="core-sw.lan", uptime_ticks=105_084_000),
        interfaces=[
            ev.SnmpInterface(
                if_index=1,
                name="Gi0/1",
                speed_bps=1_000_000_000,
                admin_status=1,
                oper_status=1,
                in_octets=10**12,
                in_bps=2_456_000.0,
                out_bps=940_000.0,
            ),
            ev.SnmpInterface(
                if_index=2, name="Te0/2", speed_bps=10_000_000_000, admin_status=1, oper_status=2
            ),
        ],
    )
    await web.ctx.store.submit([Record.from_envelope(stamper.stamp(ev.Envelope(snmp=sample)))])
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    html = (await c.get("/snmp")).text
    assert re.search(r'class="num uptime"[^>]*>12d 3h 54m<', html)
    assert ">1 Gb/s<" in html and ">10 Gb/s<" in html and " d</td>" not in html
    assert re.search(r'class="num rate-in"[^>]*>2.46 Mb/s<', html) and re.search(
        r'class="num rate-out"[^>]*>940 kb/s<', html
    )
    assert re.search(r'class="num rate-in"[^>]*>—<', html)  # no rate yet on Te0/2: none is made up
    assert ">up</span> / <span" in html and ">down</span>" in html


async def test_events_read_as_one_line_per_kind_and_a_typed_detail(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    html = (await c.get("/events")).text
    assert "TCP/https 10.0.0.1:40000 → 10.0.0.2:443, 22 pkts, 54.1 KiB, 2.5 s, end_of_flow" in html
    assert "exec pid 4242 ppid 1 as alice: curl -s https://example.org/" in html
    assert "new: 10.0.0.2, 3c:2a:f4:a1:b2:c3, Hewlett Packard, printer-3" in html
    assert "agent Workstation-7 v" in html
    assert '{"' not in html  # no raw JSON in the list
    flow = (await c.get("/api/v1/events", params={"kind": "flow"})).json()["items"][0]
    detail = (await c.get(f"/events/{flow['store_seq']}")).text
    assert "<dt>protocol</dt><dd>TCP (6)</dd>" in detail and "<dt>service</dt><dd>https</dd>" in detail
    assert (
        "<dt>duration</dt><dd>2.5 s</dd>" in detail and "<dt>reverse octets</dt><dd>50.8 KiB</dd>" in detail
    )
    assert f"<dt>Community ID</dt><dd>{CID}</dd>" in detail and 'id="body"' in detail


async def test_process_search_covers_the_exec_history_and_the_table_sorts(web: Web) -> None:
    await seed(web)
    stamper = EnvelopeStamper("ws-agent")
    await web.ctx.store.submit(
        [
            Record.from_envelope(
                stamper.stamp(
                    ev.Envelope(
                        process=ev.ProcessEvent(
                            kind=ev.ProcessEvent.EXIT,
                            pid=4242,
                            exe="/usr/bin/curl",
                            exit_code=0,
                            user="alice",
                            lifetime_ns=1_500_000_000,
                        )
                    ),
                    ts_ns=NOW + 1,
                )
            ),
            Record.from_envelope(
                stamper.stamp(
                    ev.Envelope(
                        process=ev.ProcessEvent(
                            kind=ev.ProcessEvent.SNAPSHOT,
                            pid=9,
                            exe="/usr/bin/big",
                            rss_bytes=10**9,
                            user="bob",
                        )
                    )
                )
            ),
        ]
    )
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    found = (await c.get("/api/v1/processes/execs", params={"q": "EXAMPLE.ORG"})).json()
    assert [(e["body"]["kind"], e["body"]["pid"]) for e in found["items"]] == [("EXEC", 4242)]
    by_user = (await c.get("/api/v1/processes/execs", params={"q": "alice", "limit": 1})).json()
    assert [e["body"]["kind"] for e in by_user["items"]] == ["EXIT"] and by_user["next_before"]
    older = (
        await c.get("/api/v1/processes/execs", params={"q": "alice", "before": by_user["next_before"]})
    ).json()
    assert [e["body"]["kind"] for e in older["items"]] == ["EXEC"] and older["next_before"] is None
    page = (await c.get("/processes", params={"q": "alice", "limit": 1})).text
    execs = page[page.index('id="execs"') : page.index("</table>", page.index('id="execs"'))]
    assert execs.count("<tr data-seq=") == 1 and ">exit</a>" in execs  # the search's newest, linked
    assert 'id="older-execs" class="pager" href="/processes?q=alice&amp;limit=1&amp;before=' in page
    rss = (await c.get("/api/v1/processes", params={"sort": "rss"})).json()["items"]
    assert rss[0]["pid"] == 9
    assert (await c.get("/api/v1/processes", params={"sort": "nonsense"})).status_code == 400
