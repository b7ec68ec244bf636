"""The detections' process table: parents by pid per source, exited ones findable for a while, bounded."""

from __future__ import annotations

from amoskys.detections.process_table import ProcessTables, Program


def test_parents_are_found_per_source_and_an_exited_one_until_its_pid_runs_again() -> None:
    t = ProcessTables(max_per_source=3, retired_keep=1)
    sh = Program("/usr/bin/dash", ("sh", "-c", "x"), 1)
    t.run("a", 10, sh)
    t.run("b", 10, Program("/usr/bin/bash", ("bash",), 2))
    assert t.get("a", 10) == sh and t.get("b", 10) is not None and t.get("c", 10) is None
    t.exit("a", 10)
    assert t.get("a", 10) == sh  # a child that execs after its parent exited still finds it
    t.run("a", 10, Program("/usr/bin/true", ("true",), 3))  # the pid runs something new
    assert t.get("a", 10) is not None and t.get("a", 10).exe == "/usr/bin/true"  # type: ignore[union-attr]
    t.exit("a", 10)
    t.run("a", 11, sh)
    t.exit("a", 11)  # only one exited process is kept: 10's entry goes
    assert t.get("a", 10) is None and t.get("a", 11) == sh


def test_a_source_flooding_its_table_loses_its_oldest_entries_only() -> None:
    t = ProcessTables(max_per_source=3)
    for pid in range(1, 6):
        t.run("busy", pid, Program(f"/p{pid}", (), pid))
    t.run("quiet", 1, Program("/q", (), 0))
    assert [t.get("busy", p) is not None for p in range(1, 6)] == [False, False, True, True, True]
    assert t.get("quiet", 1) is not None and len(t) == 4
