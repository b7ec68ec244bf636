"""An IP address now answered by another MAC (ARP spoofing, or a replaced device): DeviceEvent
MAC_CHANGED, which discovery emits when an unknown MAC claims the address of a present device."""

from __future__ import annotations

from amoskys.detections.builtin.finding import Detector, Finding, builtin_rule, mac_text
from amoskys.proto import events_pb2

RULE = builtin_rule(
    "mac_change",
    "IP address moved to another MAC (possible ARP spoofing)",
    "high",
    tags=("attack.t1557.002",),
    description="An address of a device still present was claimed by another MAC.",
)


class MacChange(Detector):
    name = "mac_change"
    rules = (RULE,)
    kinds = frozenset({"device"})

    def event(self, envelope: events_pb2.Envelope, now_ns: int) -> list[Finding]:
        d = envelope.device
        if d.change != events_pb2.DeviceEvent.MAC_CHANGED:
            return []
        mac, previous = mac_text(d.mac), mac_text(d.previous_mac)
        return [
            Finding(
                RULE,
                envelope.source,
                envelope.ts_ns,
                f"{d.ip} moved from MAC {previous} to {mac}" + (f" ({d.vendor})" if d.vendor else ""),
                {
                    "ip": d.ip,
                    "mac": mac,
                    "previous_mac": previous,
                    "vendor": d.vendor,
                    "interface": d.interface,
                    "locally_administered": "true" if d.mac_locally_administered else "false",
                },
                evidence=envelope.event_id,
            )
        ]
