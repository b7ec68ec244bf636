"""What the dashboard needs on first start: the first admin (random password in a 0600 file, never
logged) and the secret that CSRF tokens are derived from."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import structlog

from amoskys.files import write_atomic
from amoskys.store.state import ApplianceState
from amoskys.web import passwords

log = structlog.get_logger(__name__)

ADMIN_PASSWORD_FILE = "admin-password"
SECRET_FILE = "web.secret"


async def ensure_first_admin(state: ApplianceState, data_dir: Path) -> None:
    """With no users at all, create `admin` with a random password written to a 0600 file."""
    if await state.count_users() > 0:
        return
    password = passwords.new_password()
    path = data_dir / ADMIN_PASSWORD_FILE
    await asyncio.to_thread(write_atomic, path, (password + "\n").encode(), 0o600)  # fsyncs: off the loop
    await state.create_user("admin", await passwords.hash_password(password), "admin")
    log.info("first_admin_created", user="admin", password_file=str(path))


def load_secret(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    data = secrets.token_bytes(32)
    write_atomic(path, data, 0o600)
    return data
