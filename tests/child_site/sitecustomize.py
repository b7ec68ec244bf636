"""Test-only: the blocking-call detector in an `amoskys run` child of the test suite.

tests/support.py's start_appliance puts this folder on the child's PYTHONPATH, so Python imports
this module at start-up; product code knows nothing of it. It activates tests/blocking.py's detector
(the same ALLOWED list) in logging mode: each blocking call made on the event loop from product code
is written to stderr as one line starting with "Blocking call to", and then runs. The
appliance_factory fixture (tests/conftest.py) fails the test at teardown when the child's log has
such a line.
"""

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_amoskys_blocking", Path(__file__).resolve().parent.parent / "blocking.py"
)
if _spec is not None and _spec.loader is not None:
    _blocking = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _blocking  # dataclasses look their module up there
    _spec.loader.exec_module(_blocking)
    _blocking.activate(_blocking.log_to_stderr, raise_it=False)

# the CPU-stall guard (tests/stall_guard.py): "CPU stall: <callback> <ms> ms" on stderr for each loop
# callback using more than 100 ms of CPU; appliance_factory fails the test at teardown on such a line
_guard_spec = importlib.util.spec_from_file_location(
    "_amoskys_stall_guard", Path(__file__).resolve().parent.parent / "stall_guard.py"
)
if _guard_spec is not None and _guard_spec.loader is not None:
    _guard = importlib.util.module_from_spec(_guard_spec)
    sys.modules[_guard_spec.name] = _guard
    _guard_spec.loader.exec_module(_guard)
    _guard.activate_in_child()
