"""Enrolled identities as the bus sees them, read from the appliance state."""

from __future__ import annotations

from amoskys.bus.auth import Identity, IdentityLoader
from amoskys.pki.identities import key_id_of_raw
from amoskys.store.state import ApplianceState


def identity_loader(state: ApplianceState) -> IdentityLoader:
    """A loader for the Authenticator: one short read of the identities table per cache miss."""

    async def load(name: str) -> Identity | None:
        row = await state.get_identity(name)
        if row is None:
            return None
        key_id = key_id_of_raw(row.public_key)
        return Identity(
            name=row.name, role=row.role, public_key=row.public_key, key_id=key_id, revoked=row.revoked
        )

    return load
