"""SNMP device health from SnmpSample events: an interface going down, an error-rate spike on an
interface, a device that stops answering (or never answered). Each fires on the change into the bad
state, not on every sample while it lasts; a device or interface that recovers can fire again."""

from __future__ import annotations

from dataclasses import dataclass

from amoskys.config import SnmpHealthConfig
from amoskys.detections.builtin.finding import Detector, Finding, builtin_rule
from amoskys.proto import events_pb2

IF_DOWN = builtin_rule(
    "snmp_if_down",
    "SNMP interface went down",
    "medium",
    description="An interface's ifOperStatus changed from up to another state.",
)
ERROR_RATE = builtin_rule(
    "snmp_error_rate",
    "SNMP interface error-rate spike",
    "medium",
    description="The share of errored packets on an interface between two samples reached the threshold.",
)
UNREACHABLE = builtin_rule(
    "snmp_unreachable",
    "SNMP device unreachable",
    "high",
    description="A polled device did not answer (it answered before, or never did since start).",
)
_UP = 1
#: ifOperStatus names (IF-MIB)
OPER = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}


@dataclass(slots=True)
class _If:
    oper: int
    errors: int
    packets: int
    spiking: bool = False


def _counts(i: events_pb2.SnmpInterface) -> tuple[int, int]:
    errors = i.in_errors + i.out_errors
    packets = (
        i.in_ucast_pkts
        + i.out_ucast_pkts
        + i.in_multicast_pkts
        + i.out_multicast_pkts
        + i.in_broadcast_pkts
        + i.out_broadcast_pkts
    )
    return errors, packets


class SnmpHealth(Detector):
    name = "snmp_health"
    rules = (IF_DOWN, ERROR_RATE, UNREACHABLE)
    kinds = frozenset({"snmp"})

    def __init__(self, config: SnmpHealthConfig) -> None:
        self.rate = config.error_rate_percent
        self.min_errors = config.min_errors
        self._reachable: dict[tuple[str, str], bool] = {}
        self._ifs: dict[tuple[str, str, int], _If] = {}

    def event(self, envelope: events_pb2.Envelope, now_ns: int) -> list[Finding]:
        s = envelope.snmp
        host, ts, evidence = envelope.source, envelope.ts_ns, envelope.event_id
        device = (host, s.target)
        was = self._reachable.get(device)
        self._reachable[device] = s.reachable
        base = {"target": s.target, "address": s.address}
        if not s.reachable:
            if was is False:
                return []
            why = "stopped answering" if was else "does not answer"
            return [
                Finding(
                    UNREACHABLE,
                    host,
                    ts,
                    f"SNMP device {s.target} ({s.address}) {why}" + (f": {s.error}" if s.error else ""),
                    base | {"error": s.error},
                    evidence=evidence,
                )
            ]
        out: list[Finding] = []
        restarted = s.agent_restarted
        for i in s.interfaces:
            key = (host, s.target, i.if_index)
            errors, packets = _counts(i)
            old = self._ifs.get(key)
            now = _If(i.oper_status, errors, packets)
            self._ifs[key] = now
            if old is None:
                continue
            name = i.name or i.descr or str(i.if_index)
            attrs = base | {"if_index": str(i.if_index), "interface": name}
            if old.oper == _UP and i.oper_status != _UP:
                state = OPER.get(i.oper_status, str(i.oper_status))
                out.append(
                    Finding(
                        IF_DOWN,
                        host,
                        ts,
                        f"interface {name} of {s.target} went {state}",
                        attrs
                        | {
                            "oper_status": state,
                            "admin_status": OPER.get(i.admin_status, str(i.admin_status)),
                        },
                        evidence=evidence,
                    )
                )
            if restarted or i.counters_reset or errors < old.errors or packets < old.packets:
                continue  # counters started over: the next sample has a rate again
            d_err, d_pkts = errors - old.errors, packets - old.packets
            percent = 100.0 * d_err / (d_err + d_pkts) if d_err else 0.0
            now.spiking = d_err >= self.min_errors and percent >= self.rate
            if now.spiking and not old.spiking:
                out.append(
                    Finding(
                        ERROR_RATE,
                        host,
                        ts,
                        f"interface {name} of {s.target}: {d_err} errors in {d_err + d_pkts} packets "
                        f"({percent:.1f}%)",
                        attrs
                        | {"errors": str(d_err), "packets": str(d_pkts + d_err), "percent": f"{percent:.2f}"},
                        evidence=evidence,
                    )
                )
        return out
