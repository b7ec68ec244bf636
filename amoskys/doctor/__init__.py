"""`amoskys doctor`: read-only checks of whether this box can run the configured appliance or agent.

Each module owns one family of checks (small functions returning Findings); ``diagnose`` runs them in
order and ``report`` renders the result. Nothing here creates, changes or locks a file.
"""

from amoskys.doctor.diagnose import diagnose
from amoskys.doctor.findings import Finding, Report

__all__ = ["Finding", "Report", "diagnose"]
