"""The appliance's own view of its health: readiness and each component's state."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ComponentState:
    ok: bool
    detail: str = ""


@dataclass
class Health:
    """Components report here; /healthz and /readyz read it. Nothing is assumed healthy."""

    ready: bool = False
    stopping: bool = False
    components: dict[str, ComponentState] = field(default_factory=dict)

    def set(self, name: str, ok: bool, detail: str = "") -> None:
        self.components[name] = ComponentState(ok, detail)

    def snapshot(self) -> dict[str, object]:
        return {
            "ready": self.is_ready(),
            "stopping": self.stopping,
            "components": {n: {"ok": c.ok, "detail": c.detail} for n, c in sorted(self.components.items())},
        }

    def is_ready(self) -> bool:
        return self.ready and not self.stopping and all(c.ok for c in self.components.values())
