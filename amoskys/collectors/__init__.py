"""Collectors: one folder per collector (see README.md); ``registry`` finds them.

A folder of this package on any ``sys.path`` entry joins it (``pkgutil.extend_path``), so a collector
kept outside the source tree is found like the shipped ones.
"""

from __future__ import annotations

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
