"""The store: the event log (group-committed, deduplicated, chained), derived views, appliance state."""

from amoskys.store.errors import StateConflictError, SubmitRefusedError
from amoskys.store.facade import Store
from amoskys.store.maintenance import MaintenanceReport
from amoskys.store.records import Outcome, Record, StoredEvent
from amoskys.store.space import SpaceState, StoreStats
from amoskys.store.state import ApplianceState, ChainAnchor

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
