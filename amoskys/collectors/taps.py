"""PacketTaps: where passive watchers meet the capture path, whichever of the two (re)starts first.

The app makes one and gives it to every collector context (``ctx.packet_taps``). A watcher (discovery)
calls ``watch(name, observer)``; a capture (the flow collector) calls ``connect(add_observer)`` when it
starts and the returned function when it stops. The capture is given one stable relay per watcher
name, so a watcher that restarts swaps its target behind the relay and never piles up in the flow table.
It also carries the appliance's one ``flow_starts`` (amoskys.collectors.flow_starts): each new flow a
capture sees, for in-process detectors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from amoskys.collectors.flow_starts import FlowStarts


class Observer(Protocol):
    """What the flow collector's ``add_observer`` takes (see ``amoskys.collectors.flow.table.PacketObserver``)."""

    ethertypes: frozenset[int]
    udp_ports: frozenset[int]

    def observe(self, ts_ns: int, frame: bytes, packet: Any) -> None: ...


class _Relay:
    """The capture's view of one watcher: fixed interests, a swappable target (None: ignore frames)."""

    def __init__(self, ethertypes: frozenset[int], udp_ports: frozenset[int]) -> None:
        self.ethertypes = ethertypes
        self.udp_ports = udp_ports
        self.target: Observer | None = None

    def observe(self, ts_ns: int, frame: bytes, packet: Any) -> None:
        target = self.target
        if target is not None:
            target.observe(ts_ns, frame, packet)


class PacketTaps:
    """The registry of passive watchers and the captures that feed them."""

    def __init__(self) -> None:
        self._relays: dict[str, _Relay] = {}
        self._sinks: list[Callable[[Observer], None]] = []
        self.flow_starts = FlowStarts()

    def watch(self, name: str, observer: Observer) -> Callable[[], None]:
        """Feed `observer` from every connected capture; returns the function that stops it.

        A watcher's interests (ethertypes, UDP ports) are fixed by its first ``watch`` under `name`.
        """
        relay = self._relays.get(name)
        if relay is None:
            relay = self._relays[name] = _Relay(observer.ethertypes, observer.udp_ports)
            for sink in self._sinks:
                sink(relay)
        relay.target = observer

        def unwatch() -> None:
            if relay.target is observer:
                relay.target = None

        return unwatch

    def connect(self, add_observer: Callable[[Observer], None]) -> Callable[[], None]:
        """A capture joins: `add_observer` gets every watcher now and later; returns the disconnect."""
        self._sinks.append(add_observer)
        for relay in self._relays.values():
            add_observer(relay)

        def disconnect() -> None:
            if add_observer in self._sinks:
                self._sinks.remove(add_observer)

        return disconnect

    @property
    def captures(self) -> int:
        """Captures connected now (0: passive watchers see nothing from the capture path)."""
        return len(self._sinks)
