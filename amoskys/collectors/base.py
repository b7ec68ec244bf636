"""The collector contract: the shape of a collector class and the base of its config struct.

A collector lives in its own folder ``amoskys/collectors/<name>/`` (see README.md there): the
registry finds it; nothing central names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

if TYPE_CHECKING:
    from amoskys.collectors.context import CollectorContext


class CollectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every collector's config struct (the ``[collectors.<name>]`` section).

    ``enabled`` decides whether the supervisor starts the collector with the appliance; an operator
    may still start a disabled one at runtime. A collector that should be off by default overrides it.
    """

    enabled: bool = True


class NotConfigured(str):
    """A ``self_check()`` reason that means "nothing to do until configured" (no interface, no targets).

    The supervisor shows it as the disabled reason like any other, but logs it at info: a collector an
    operator simply has not set up is not a warning.
    """


class Collector(Protocol):
    """What the supervisor expects of a collector class and its instances.

    - ``__init__(config, ctx)`` validates and stores; it never does I/O (the supervisor calls it on
      every (re)start).
    - ``self_check()`` (optional) returns None when the collector can run here, else the reason it
      cannot (``"needs CAP_NET_RAW"``): the supervisor then shows it as disabled and never runs it.
    - ``mode`` says how it collects (``"netlink"``, ``"polling"``); it is shown in the status.
    - ``run()`` publishes through ``ctx.publish()`` until cancelled and never swallows
      ``CancelledError``. Raise ``FatalCollectorError`` (or ``StartupError(retry=False)``) for what a
      restart cannot fix; any other exception makes the supervisor restart it with backoff.
    """

    name: ClassVar[str]
    Config: ClassVar[type[CollectorConfig]]
    Metrics: ClassVar[type[Any]]  # its metrics.py class, built once as Metrics(registry)
    mode: str

    def __init__(self, config: Any, ctx: CollectorContext) -> None: ...

    async def run(self) -> None: ...
