"""AMOSKYS: a security sensor for edge networks in one process."""

__version__ = "0.2.0"
