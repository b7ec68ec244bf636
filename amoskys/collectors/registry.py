"""The collector registry: every folder under ``amoskys.collectors`` that holds a ``collector.py``.

Nothing central lists collectors. ``discover()`` walks the package's ``__path__`` with pkgutil (so it
works from a zipapp too) and records, for each collector folder, its name, its package and its config
struct — found in the folder's ``config.py`` as the one ``CollectorConfig`` subclass defined there.
Only ``config.py`` is imported while discovering: loading the config never imports the collectors.
``CollectorSpec.load()`` imports ``collector.py`` when the supervisor needs the class.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import pkgutil
from dataclasses import dataclass
from importlib import resources
from types import ModuleType
from typing import TYPE_CHECKING, cast

from amoskys.collectors.base import CollectorConfig
from amoskys.errors import AmoskysError

if TYPE_CHECKING:
    from amoskys.collectors.base import Collector

PACKAGE = "amoskys.collectors"


class CollectorFolderError(AmoskysError):
    """A folder under ``amoskys/collectors/`` holds a ``collector.py`` but breaks the folder contract."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"collector folder {name!r}: {problem}")


@dataclass(frozen=True)
class CollectorSpec:
    """One registered collector: what its folder holds, without importing its code."""

    name: str
    package: str
    config_type: type[CollectorConfig]

    def load(self) -> type[Collector]:
        """The collector class (imports ``collector.py``): the class named ``name`` is the one."""
        module = importlib.import_module(f"{self.package}.collector")
        found = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and obj.__module__ == module.__name__
            and getattr(obj, "name", None) == self.name
        ]
        if len(found) != 1:
            raise CollectorFolderError(
                self.name, f"collector.py must define one class with name = {self.name!r}, found {len(found)}"
            )
        # A class found by name in a module imported at run time: the type checker cannot follow it;
        # the check below and each collector's tests hold it to the Collector protocol.
        cls = cast("type[Collector]", found[0])
        if cls.Config is not self.config_type:
            raise CollectorFolderError(
                self.name,
                f"{cls.__name__}.Config is {cls.Config.__name__}, but config.py defines {self.config_type.__name__}",
            )
        return cls

    def sample(self) -> str:
        """The folder's ``sample.toml``: its commented ``[collectors.<name>]`` section."""
        path = resources.files(self.package).joinpath("sample.toml")
        if not path.is_file():
            raise CollectorFolderError(self.name, "has no sample.toml")
        return path.read_text(encoding="utf-8")

    def cli(self) -> ModuleType | None:
        """The folder's optional ``cli.py`` (``COMMAND``, ``HELP``, ``add_arguments(parser)``, ``run(args)``)."""
        if importlib.util.find_spec(f"{self.package}.cli") is None:
            return None
        return importlib.import_module(f"{self.package}.cli")


def _config_type(name: str, package: str) -> type[CollectorConfig]:
    try:
        module = importlib.import_module(f"{package}.config")
    except ModuleNotFoundError as err:
        if err.name != f"{package}.config":
            raise
        raise CollectorFolderError(name, "has no config.py") from None
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, CollectorConfig)
        and obj is not CollectorConfig
        and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise CollectorFolderError(
            name, f"config.py must define one CollectorConfig subclass, found {len(found)}"
        )
    return found[0]


@functools.cache
def discover() -> dict[str, CollectorSpec]:
    """Every collector folder on ``amoskys.collectors.__path__``, by name (sorted)."""
    import amoskys.collectors as collectors

    specs: dict[str, CollectorSpec] = {}
    for info in sorted(pkgutil.iter_modules(collectors.__path__), key=lambda i: i.name):
        if not info.ispkg or info.name in specs:
            continue
        package = f"{PACKAGE}.{info.name}"
        if importlib.util.find_spec(f"{package}.collector") is None:
            continue  # a helper package, not a collector
        specs[info.name] = CollectorSpec(info.name, package, _config_type(info.name, package))
    return specs


def names() -> list[str]:
    return list(discover())


def classes() -> dict[str, type[Collector]]:
    """Every collector class, by name (imports each ``collector.py``)."""
    return {name: spec.load() for name, spec in discover().items()}
