"""A device discovery had never seen (or had forgotten) appears on the LAN: DeviceEvent NEW."""

from __future__ import annotations

from amoskys.detections.builtin.finding import Detector, Finding, builtin_rule, mac_text
from amoskys.proto import events_pb2

RULE = builtin_rule(
    "new_device",
    "New device on the LAN",
    "low",
    tags=("attack.t1200",),
    description="Discovery saw a MAC address it did not know (an unknown MAC, or one forgotten after being gone).",
)


class NewDevice(Detector):
    name = "new_device"
    rules = (RULE,)
    kinds = frozenset({"device"})

    def event(self, envelope: events_pb2.Envelope, now_ns: int) -> list[Finding]:
        d = envelope.device
        if d.change != events_pb2.DeviceEvent.NEW:
            return []
        mac = mac_text(d.mac)
        what = d.ip or mac
        extra = ", ".join(x for x in (mac if d.ip else "", d.vendor, d.hostname) if x)
        return [
            Finding(
                RULE,
                envelope.source,
                envelope.ts_ns,
                f"new device {what}"
                + (f" ({extra})" if extra else "")
                + (f" on {d.interface}" if d.interface else ""),
                {
                    "ip": d.ip,
                    "mac": mac,
                    "vendor": d.vendor,
                    "hostname": d.hostname,
                    "interface": d.interface,
                    "seen_by": ",".join(d.seen_by),
                },
                evidence=envelope.event_id,
            )
        ]
