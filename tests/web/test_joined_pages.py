"""The joined pages: a host page per source (its process tree, exec stream, flows by the addresses its
heartbeat reports, alerts) and a device page per LAN device (IP/MAC history, probe results, flows, top
peers), from events published in-process into a real store; and the links that lead to them."""

from __future__ import annotations

import time

from amoskys.community_id import community_id_of
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.store.queries.joined import process_tree

from web_harness import VIEWER_PASSWORD, Web

NOW = time.time_ns()
MAC = bytes.fromhex("3c2af4a1b2c3")
S = 1_000_000_000


def _rec(stamper: EnvelopeStamper, env: ev.Envelope, ts_ns: int) -> Record:
    return Record.from_envelope(stamper.stamp(env, ts_ns=ts_ns))


def _proc(kind: int, pid: int, ppid: int, exe: str, *argv: str, user: str = "root") -> ev.Envelope:
    return ev.Envelope(
        process=ev.ProcessEvent(kind=kind, pid=pid, ppid=ppid, exe=exe, argv=[exe, *argv], user=user)
    )


def _flow(src: str, sport: int, dst: str, dport: int, octets: int, ts_ns: int) -> ev.Envelope:
    return ev.Envelope(
        flow=ev.FlowRecord(
            src_addr=src,
            dst_addr=dst,
            src_port=sport,
            dst_port=dport,
            protocol=6,
            forward=ev.FlowDirection(packets=10, octets=octets),
            reverse=ev.FlowDirection(packets=8, octets=octets // 2),
            first_ts_ns=ts_ns - S,
            last_ts_ns=ts_ns,
            final=True,
            end_reason=ev.END_OF_FLOW,
            community_id=community_id_of(src, dst, 6, sport, dport),
        )
    )


async def seed(web: Web) -> None:
    """ws-agent (heartbeat: 10.0.0.1) with systemd → sshd → bash → curl, an exec stream of 60 events
    and an alert; a printer that moved from 10.0.0.9 to 10.0.0.2 (port 631 open); flows from 10.0.0.1
    to the printer and to 192.0.2.80, and one between two others that neither page may show."""
    agent, sensor, appliance = (
        EnvelopeStamper("ws-agent"),
        EnvelopeStamper("sensor"),
        EnvelopeStamper("sensor"),
    )
    snap = ev.ProcessEvent.SNAPSHOT
    recs = [
        _rec(
            agent,
            ev.Envelope(
                heartbeat=ev.Heartbeat(
                    hostname="Workstation-7", mode="agent", addresses=["10.0.0.1"], os="Linux 6.1"
                )
            ),
            NOW,
        ),
        _rec(agent, _proc(snap, 1, 0, "/sbin/init"), NOW),
        _rec(agent, _proc(snap, 700, 1, "/usr/sbin/sshd", "-D"), NOW),
        _rec(agent, _proc(snap, 900, 700, "/bin/bash", user="alice"), NOW),
        _rec(agent, _proc(snap, 50, 1, "/usr/sbin/cron"), NOW),
        _rec(
            agent,
            _proc(ev.ProcessEvent.EXEC, 901, 900, "/usr/bin/curl", "-s", "https://x/", user="alice"),
            NOW,
        ),
    ]
    recs += [
        _rec(
            agent, _proc(ev.ProcessEvent.EXEC, 2000 + i, 900, "/usr/bin/true", f"run-{i}"), NOW - (i + 1) * S
        )
        for i in range(60)
    ]
    recs += [
        _rec(
            sensor,
            ev.Envelope(
                device=ev.DeviceEvent(
                    change=ev.DeviceEvent.NEW,
                    ip="10.0.0.9",
                    mac=MAC,
                    vendor="Hewlett Packard",
                    hostname="printer-3",
                    seen_by=["arp_sweep"],
                )
            ),
            NOW - 3600 * S,
        ),
        _rec(
            sensor,
            ev.Envelope(
                device=ev.DeviceEvent(
                    change=ev.DeviceEvent.IP_CHANGED,
                    ip="10.0.0.2",
                    previous_ip="10.0.0.9",
                    mac=MAC,
                    vendor="Hewlett Packard",
                    hostname="printer-3",
                    seen_by=["arp_sweep", "dhcp"],
                    open_tcp_ports=[631, 9100],
                )
            ),
            NOW - 60 * S,
        ),
        _rec(
            sensor,
            ev.Envelope(
                device=ev.DeviceEvent(
                    change=ev.DeviceEvent.NEW, ip="10.0.0.5", mac=bytes.fromhex("020000000005")
                )
            ),
            NOW - 60 * S,
        ),
        _rec(sensor, _flow("10.0.0.1", 40000, "10.0.0.2", 631, 9_000, NOW - 5 * S), NOW - 5 * S),
        _rec(sensor, _flow("10.0.0.1", 40001, "10.0.0.2", 9100, 1_000, NOW - 4 * S), NOW - 4 * S),
        _rec(sensor, _flow("10.0.0.2", 5353, "224.0.0.251", 5353, 300, NOW - 3 * S), NOW - 3 * S),
        _rec(sensor, _flow("10.0.0.1", 40002, "192.0.2.80", 443, 50_000, NOW - 2 * S), NOW - 2 * S),
        _rec(sensor, _flow("10.0.0.7", 40003, "10.0.0.8", 22, 777, NOW - S), NOW - S),
    ]
    curl = recs[5].parsed
    assert curl is not None
    recs.append(
        _rec(
            appliance,
            ev.Envelope(
                alert=ev.Alert(
                    rule="curl_pipe",
                    rule_id="curl_pipe",
                    title="Curl to shell",
                    level=3,
                    host="ws-agent",
                    count=1,
                    summary="curl",
                    related_event_ids=[curl.event_id],
                )
            ),
            NOW,
        )
    )
    await web.ctx.store.submit(recs)


def test_the_tree_puts_each_parent_before_its_children_and_loses_no_row() -> None:
    rows = [
        {"pid": p, "ppid": pp}
        for p, pp in ((1, 0), (50, 1), (700, 1), (900, 700), (901, 900), (30, 31), (31, 30), (5, 5))
    ]
    tree = [(r["pid"], r["depth"]) for r in process_tree(rows)]
    assert tree[:5] == [(1, 0), (50, 1), (700, 1), (900, 2), (901, 3)]
    assert (5, 0) in tree  # its own parent: a root
    assert sorted(p for p, _ in tree) == sorted(r["pid"] for r in rows)  # the 30 ↔ 31 cycle kept, once each


async def test_host_page_shows_tree_execs_flows_and_alerts(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    h = (await c.get("/api/v1/hosts/ws-agent")).json()
    assert (h["hostname"], h["addresses"], h["os"]) == ("Workstation-7", ["10.0.0.1"], "Linux 6.1")
    tree = [(p["pid"], p["depth"]) for p in h["processes"]]
    assert tree[:5] == [(1, 0), (50, 1), (700, 1), (900, 2), (901, 3)]  # then the other 60 children of bash
    assert tree[5:] == [(2000 + i, 3) for i in range(60)] and not h["processes_truncated"]
    assert [e["body"]["pid"] for e in h["execs"]["items"]][:2] == [901, 2000]
    assert len(h["execs"]["items"]) == 50 and h["execs"]["next_before"] is not None
    older = (await c.get("/api/v1/hosts/ws-agent", params={"before": h["execs"]["next_before"]})).json()
    assert [e["body"]["pid"] for e in older["execs"]["items"]] == list(range(2049, 2060))  # the other 11
    # flows of the address its heartbeat reports, newest first; the one between strangers left out
    assert [(f["body"]["dst_addr"], f["body"]["dst_port"]) for f in h["flows"]] == [
        ("192.0.2.80", 443),
        ("10.0.0.2", 9100),
        ("10.0.0.2", 631),
    ]
    assert h["names"]["10.0.0.2"]["device"]["hostname"] == "printer-3"
    assert [(a["title"], a["host"]) for a in h["alerts"]] == [("Curl to shell", "ws-agent")]

    html = (await c.get("/hosts/ws-agent")).text
    tree_html = html[html.index('id="host-tree"') :]
    assert (
        tree_html.index('data-pid="700"')
        < tree_html.index('data-pid="900"')
        < tree_html.index('data-pid="901"')
    )
    assert 'data-pid="901" data-ppid="900" data-depth="3"' in html and 'class="depth-3"' in html
    assert "Curl to shell" in html and 'data-src="/api/v1/series/host?source=ws-agent"' in html
    assert 'href="/devices/10.0.0.2"' in html or 'href="/flows?ip=10.0.0.2"' in html
    assert 'id="older-execs"' in html and "https" in html
    # another box's page is not "Host" (this box) in the navigation; the Host page itself is
    assert 'href="/host" class="active"' not in html
    assert 'href="/host" class="active"' in (await c.get("/host")).text
    # the exec stream's newest page takes new execs live (app.js), of this source; an older page stays put
    execs_html = html[html.index('id="host-execs"') :]
    assert execs_html.index('data-source="ws-agent"') < execs_html.index(">")
    assert execs_html.index("data-live-execs") < execs_html.index(">")
    older_html = (await c.get("/hosts/ws-agent", params={"before": h["execs"]["next_before"]})).text
    assert 'id="host-execs"' in older_html and "data-live-execs" not in older_html
    assert (await c.get("/api/v1/hosts/nobody")).status_code == 404
    assert (await c.get("/hosts/nobody")).status_code == 404


async def test_device_page_shows_history_probe_flows_and_top_peers(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    for key in ("3c:2a:f4:a1:b2:c3", "3C-2A-F4-A1-B2-C3", "10.0.0.2"):
        d = (await c.get(f"/api/v1/devices/{key}")).json()
        assert (d["mac"], d["ip"], d["vendor"], d["hostname"]) == (
            "3c:2a:f4:a1:b2:c3",
            "10.0.0.2",
            "Hewlett Packard",
            "printer-3",
        ), key
    assert d["first_seen_ns"] == NOW - 3600 * S
    assert [(e["body"]["change"], e["body"]["ip"], e["body"].get("previous_ip")) for e in d["history"]] == [
        ("IP_CHANGED", "10.0.0.2", "10.0.0.9"),
        ("NEW", "10.0.0.9", None),
    ]
    assert d["probe"]["open_tcp_ports"] == [631, 9100] and d["probe"]["seen_by"] == ["arp_sweep", "dhcp"]
    assert [f["body"]["dst_port"] for f in d["flows"]] == [5353, 9100, 631]
    assert [(p["addr"], p["octets"], p["flows"]) for p in d["peers"]] == [
        ("10.0.0.1", 15_000, 2),
        ("224.0.0.251", 450, 1),
    ]
    assert d["peer_names"]["10.0.0.1"]["host"]["source"] == "ws-agent"
    # the old address finds it too (its history names it)
    old = (await c.get("/api/v1/devices/10.0.0.9")).json()
    assert (old["mac"], old["ip"], len(old["history"])) == ("3c:2a:f4:a1:b2:c3", "10.0.0.2", 2)

    html = (await c.get("/devices/3c:2a:f4:a1:b2:c3")).text
    assert "Hewlett Packard" in html and "631 (ipp)" in html
    assert 'href="/devices/10.0.0.9"' in html  # the address it had before
    assert 'href="/hosts/sensor"' in html  # the collector's source that saw it
    bad = await c.get("/api/v1/devices/not-a-device")
    assert bad.status_code == 400 and "'key'" in bad.json()["error"]
    assert (await c.get("/api/v1/devices/10.9.9.9")).status_code == 404


async def test_source_names_macs_and_addresses_link_to_the_joined_pages(web: Web) -> None:
    await seed(web)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    devices = (await c.get("/devices")).text
    assert 'href="/devices/3c%3A2a%3Af4%3Aa1%3Ab2%3Ac3"' in devices and 'href="/devices/10.0.0.2"' in devices
    assert 'href="/devices/10.0.0.5"' in devices
    processes = (await c.get("/processes")).text
    execs = processes[processes.index('id="execs"') : processes.index('id="procs"')]
    assert (
        'href="/hosts/ws-agent"' in execs
        and 'href="/hosts/ws-agent"' in processes[processes.index('id="procs"') :]
    )
    assert f'href="/hosts/{web.ctx.name}"' in (await c.get("/agents")).text  # the appliance's own page
    page = await c.get("/devices/3c%3A2a%3Af4%3Aa1%3Ab2%3Ac3")
    assert page.status_code == 200 and "printer-3" in page.text


async def test_device_page_shows_the_switch_port_from_a_stored_fdb_sample(web: Web) -> None:
    await seed(web)
    sensor = EnvelopeStamper("sensor")

    def sample(ts_ns: int, *entries: ev.SnmpFdbEntry) -> Record:
        snmp = ev.SnmpSample(target="access-sw", address="192.0.2.9:161", reachable=True, fdb_polled=True)
        snmp.system.name = "access-sw.lan"
        snmp.fdb.extend(entries)
        return _rec(sensor, ev.Envelope(snmp=snmp), ts_ns)

    uplink = [
        ev.SnmpFdbEntry(mac=bytes([2, 0, 0, 0, 1, i]), port=1, if_index=1, vlan=10, status=3)
        for i in range(3)
    ]
    printer = ev.SnmpFdbEntry(mac=MAC, port=5, if_index=3, if_name="Gi0/3", vlan=10, status=3)
    # the older table had the printer on port 2; the newer one (stored first: out of order) on port 5
    await web.ctx.store.submit([sample(NOW, printer, *uplink)])
    await web.ctx.store.submit([sample(NOW - 60 * S, ev.SnmpFdbEntry(mac=MAC, port=2, if_index=2, vlan=10))])
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    d = (await c.get("/api/v1/devices/10.0.0.2")).json()
    assert [
        (p["target"], p["if_name"], p["if_index"], p["port"], p["vlan"], p["macs_on_port"])
        for p in d["switch_ports"]
    ] == [("access-sw", "Gi0/3", 3, 5, 10, 1)]
    assert d["switch_ports"][0]["sys_name"] == "access-sw.lan"
    html = (await c.get("/devices/10.0.0.2")).text
    port_html = html[html.index('id="device-switch-port"') :]
    assert 'href="/snmp?target=access-sw&amp;if_index=3">Gi0/3</a>' in port_html
    # a MAC only the switch knows has a page too; the next table without it forgets it
    uplink_mac = "02:00:00:00:01:00"
    seen = (await c.get(f"/api/v1/devices/{uplink_mac}")).json()
    assert [(p["port"], p["macs_on_port"]) for p in seen["switch_ports"]] == [(1, 3)]
    await web.ctx.store.submit([sample(NOW + S, printer)])
    assert (await c.get(f"/api/v1/devices/{uplink_mac}")).status_code == 404


async def test_a_locally_administered_mac_is_said_once_beside_the_mac(web: Web) -> None:
    phone = bytes.fromhex("02a1b2c3d4e5")  # the locally administered bit: a randomised MAC
    device = ev.DeviceEvent(
        change=ev.DeviceEvent.NEW,
        ip="10.0.0.77",
        mac=phone,
        seen_by=["arp_sweep"],
        mac_locally_administered=True,
    )
    await web.ctx.store.submit([_rec(EnvelopeStamper("sensor"), ev.Envelope(device=device), NOW)])
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    html = (await c.get("/devices/02:a1:b2:c3:d4:e5")).text
    assert html.count("<dt>MAC</dt>") == 1
    mac = html[html.index('id="device-mac"') :]
    mac = mac[: mac.index("</dd>")]
    assert "02:a1:b2:c3:d4:e5" in mac and "locally administered" in mac
