"""What `amoskys rules check` reports about a RuleSet: every rule as loaded, unsupported (with the
reason) or invalid, as text or JSON, and the exit code (0 all loaded, 1 some unsupported or no rule
found, 2 a file is not valid YAML or Sigma)."""

from __future__ import annotations

from typing import Any, Final, Protocol

from amoskys.detections.sigma.model import Invalid, Rule, Unsupported

EXIT_OK: Final = 0
EXIT_UNSUPPORTED: Final = 1
EXIT_INVALID: Final = 2


class Checked(Protocol):
    @property
    def rules(self) -> tuple[Rule, ...]: ...
    @property
    def unsupported(self) -> tuple[Unsupported, ...]: ...
    @property
    def invalid(self) -> tuple[Invalid, ...]: ...


def exit_code(result: Checked) -> int:
    if result.invalid:
        return EXIT_INVALID
    if result.unsupported or not result.rules:
        return EXIT_UNSUPPORTED
    return EXIT_OK


def as_json(result: Checked) -> dict[str, Any]:
    return {
        "counts": {
            "loaded": len(result.rules),
            "unsupported": len(result.unsupported),
            "invalid": len(result.invalid),
        },
        "loaded": [
            {
                "id": r.id,
                "title": r.title,
                "level": r.level,
                "category": r.category,
                "tags": list(r.tags),
                "fields": list(r.fields_used),
                "path": str(r.path),
            }
            for r in result.rules
        ],
        "unsupported": [
            {"id": u.id, "title": u.title, "reason": u.reason, "path": str(u.path)}
            for u in result.unsupported
        ],
        "invalid": [{"path": str(i.path), "reason": i.reason} for i in result.invalid],
        "exit_code": exit_code(result),
    }


def as_text(result: Checked) -> str:
    lines: list[str] = []
    for r in result.rules:
        lines.append(f"loaded       {r.id}  {r.title}  [{r.category}, {r.level or '-'}]  {r.path}")
    for u in result.unsupported:
        lines.append(f"unsupported  {u.id}  {u.title}  {u.path}: {u.reason}")
    for i in result.invalid:
        lines.append(f"invalid      {i.path}: {i.reason}")
    summary = (
        f"{len(result.rules)} loaded, {len(result.unsupported)} unsupported, {len(result.invalid)} invalid"
    )
    if not (result.rules or result.unsupported or result.invalid):
        summary += " (no rule files found)"
    lines.append(summary)
    return "\n".join(lines) + "\n"
