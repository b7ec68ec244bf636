"""table.py: a snapshot resynchronises the table without undoing execs and exits seen meanwhile."""

from __future__ import annotations

from amoskys.collectors.process.table import Proc, ProcessTable


def test_sync_adds_missing_drops_stale_and_respects_what_happened_meanwhile() -> None:
    table = ProcessTable()
    table.put(Proc(1, start_ticks=10, exe="/sbin/init"))
    table.put(Proc(2, start_ticks=20, exe="/lost/exit"))  # its exit was lost
    table.put(Proc(3, start_ticks=30, exe="/exits/during/sync"))
    table.begin_sync()
    table.put(Proc(4, start_ticks=40, exe="/new/exec"))  # exec'd while the snapshot ran
    table.pop(3)  # exited while the snapshot ran
    dropped = table.finish_sync(
        [
            Proc(1, start_ticks=10, exe="/sbin/init"),
            Proc(3, start_ticks=30, exe="/exits/during/sync"),  # the snapshot still saw it
            Proc(4, start_ticks=39, exe="/old/view"),  # the snapshot read it before its exec
            Proc(5, start_ticks=50, exe="/unseen/before"),
        ]
    )
    assert dropped == 1
    assert sorted(table.procs) == [1, 4, 5]
    assert table.procs[4].exe == "/new/exec"


def test_sync_keeps_exec_times_of_the_same_process() -> None:
    table = ProcessTable()
    table.put(Proc(7, start_ticks=70, exec_mono_ns=123))
    table.begin_sync()
    table.finish_sync([Proc(7, start_ticks=70)])
    assert table.procs[7].exec_mono_ns == 123
    table.begin_sync()
    table.finish_sync([Proc(7, start_ticks=71)])  # pid reused: a different process
    assert table.procs[7].exec_mono_ns == 0
