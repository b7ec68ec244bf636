"""The exception hierarchy: every error AMOSKYS raises on purpose is an AmoskysError."""

from __future__ import annotations

from typing import TypeVar


class AmoskysError(Exception):
    """Base of every error raised on purpose; its message is meant for the operator."""


class ConfigError(AmoskysError):
    """The configuration (file, environment or flags) is invalid.

    `path` is the key path (``$.web.listen``), `value` the offending value when known.
    """

    def __init__(self, message: str, *, path: str = "", value: object = None, source: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.value = value
        self.source = source


class DataDirError(AmoskysError):
    """The data directory cannot be created, read or written."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ListenError(AmoskysError):
    """`amoskys run` cannot listen on a configured address (in use, or not an address of this host).

    `address` is ``host:port``; `setting` names the config key and the flag that choose it.
    """

    def __init__(self, message: str, *, address: str, setting: str) -> None:
        super().__init__(message)
        self.address = address
        self.setting = setting


class PkiError(AmoskysError):
    """A certificate or key is missing, unreadable, expired or inconsistent."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class StoreError(AmoskysError):
    """The event store cannot do what was asked (I/O error, full disk, corrupt file)."""


class StoreFullError(StoreError):
    """The store is above a space limit and refuses new work until space is freed."""


class BusError(AmoskysError):
    """The EventBus cannot accept or deliver events."""


E = TypeVar("E", bound=BaseException)


def first_error(group: BaseExceptionGroup[BaseException], kind: type[E]) -> E | None:
    """The first exception of type `kind` in an exception group (a TaskGroup's), depth first."""
    for exc in group.exceptions:
        if isinstance(exc, kind):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = first_error(exc, kind)
            if found is not None:
                return found
    return None


class ControlError(AmoskysError):
    """The control socket of a running appliance cannot be reached or refused a command."""


class CollectorError(AmoskysError):
    """A collector failed; the supervisor decides what happens next."""


class StartupError(CollectorError):
    """A collector cannot start. `retry=False` means retrying cannot help (a missing privilege)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class FatalCollectorError(CollectorError):
    """A collector hit an error that restarting will not fix; it is disabled with this reason."""
