"""What a doctor check finds: one Finding per thing checked, and the Report that collects them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: ok: will work; warn: will work, degraded or soon not (the message says how); fail: will not work;
#: off: switched off in the config (nothing is checked).
Status = Literal["ok", "warn", "fail", "off"]

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "off": "off "}


@dataclass(frozen=True)
class Finding:
    """One check's verdict on one subject (``collector:flow``, ``web``, ``pki:server`` ...)."""

    subject: str
    status: Status
    message: str
    fix: str = ""
    """The exact command or setting that makes it work ("" when nothing needs doing)."""


@dataclass
class Report:
    """Every finding, in the order they were made."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, *found: Finding) -> None:
        self.findings.extend(found)

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "fail"]

    @property
    def exit_code(self) -> int:
        """0 when everything enabled can work (warnings included), 2 when something enabled cannot."""
        return 2 if self.failed else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "exit_code": self.exit_code,
            "findings": [asdict(f) for f in self.findings],
        }

    def to_text(self) -> str:
        width = max((len(f.subject) for f in self.findings), default=0)
        lines = []
        for f in self.findings:
            lines.append(f"{_MARK[f.status]}  {f.subject:<{width}}  {f.message}")
            if f.fix:
                lines.append(f"      {'':<{width}}  fix: {f.fix}")
        failed, warned = len(self.failed), sum(1 for f in self.findings if f.status == "warn")
        if failed:
            lines.append(f"{failed} problem(s) stop something enabled from working; {warned} warning(s)")
        else:
            lines.append(f"everything enabled can work; {warned} warning(s)")
        return "\n".join(lines) + "\n"
