"""The store: the event log (group-committed, deduplicated, chained), derived views, appliance state."""

from amoskys.store.errors import StateConflictError, SubmitRefusedError
from amoskys.store.records import Outcome, Record, StoredEvent
from amoskys.store.space import SpaceState, StoreStats
from amoskys.store.state import ApplianceState, ChainAnchor
from amoskys.store.writer import MaintenanceReport, Store

__all__ = [
    "ApplianceState",
    "ChainAnchor",
    "MaintenanceReport",
    "Outcome",
    "Record",
    "SpaceState",
    "StateConflictError",
    "Store",
    "StoreStats",
    "StoredEvent",
    "SubmitRefusedError",
]
