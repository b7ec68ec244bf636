"""A program run from a world-writable directory (/tmp, /dev/shm by default) or from a file deleted
after it started (the kernel's " (deleted)" suffix on /proc/PID/exe)."""

from __future__ import annotations

from amoskys.config import ExecPathConfig
from amoskys.detections.builtin.finding import Detector, Finding, builtin_rule
from amoskys.proto import events_pb2

RULE = builtin_rule(
    "exec_path",
    "Program run from a temporary directory or a deleted file",
    "high",
    tags=("attack.t1059.004", "attack.t1070.004"),
    description="An exec whose program lies under a configured directory, or whose file was deleted.",
)
DELETED = " (deleted)"


class ExecPath(Detector):
    name = "exec_path"
    rules = (RULE,)
    kinds = frozenset({"process"})

    def __init__(self, config: ExecPathConfig) -> None:
        self.prefixes = tuple(p.rstrip("/") + "/" for p in config.paths)
        self.deleted = config.deleted

    def event(self, envelope: events_pb2.Envelope, now_ns: int) -> list[Finding]:
        p = envelope.process
        if p.kind != events_pb2.ProcessEvent.EXEC or not p.exe:
            return []
        exe = p.exe
        deleted = exe.endswith(DELETED)
        path = exe[: -len(DELETED)] if deleted else exe
        if deleted and self.deleted:
            why = "deleted file"
        elif path.startswith(self.prefixes):
            why = next(pre.rstrip("/") for pre in self.prefixes if path.startswith(pre))
        else:
            return []
        cmd = " ".join(p.argv) or path
        return [
            Finding(
                RULE,
                envelope.source,
                envelope.ts_ns,
                f"exec from {why}: {cmd}",
                {
                    "exe": exe,
                    "command_line": cmd[:1000],
                    "pid": str(p.pid),
                    "ppid": str(p.ppid),
                    "user": p.user,
                    "reason": "deleted" if why == "deleted file" else "path",
                },
                evidence=envelope.event_id,
            )
        ]
