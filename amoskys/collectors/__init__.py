"""Collectors: one folder per collector (see README.md); ``registry`` finds them.

An ``amoskys/collectors/`` directory under any other ``sys.path`` entry joins this package's path, so a
collector folder kept outside the installed tree (a site's own, or a test's) is found like the shipped
ones. The shipped folders come first: a name is never taken over.
"""

from __future__ import annotations

import os
import sys


def _extend(path: list[str]) -> list[str]:
    seen = {os.path.realpath(p) for p in path}
    for entry in sys.path:
        candidate = os.path.join(entry or os.curdir, "amoskys", "collectors")
        real = os.path.realpath(candidate)
        if real not in seen and os.path.isdir(candidate):
            seen.add(real)
            path.append(candidate)
    return path


__path__ = _extend(list(__path__))
