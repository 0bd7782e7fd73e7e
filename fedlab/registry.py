"""Name -> implementation, for every kind of option a run chooses by name.

Each kind (algorithm, aggregator, optimizer, model, dataset) is one package whose modules
register themselves with a decorator; the registry imports every module of its package the first
time a name is looked up, so adding an option is one new module (and its YAML file) and no edit
anywhere else. Validation (``fedlab.config``) checks names and keys against these registries, so
a plug-in module must be cheap to import: it may import NumPy, but TensorFlow only inside the
functions that train (``tests/test_layout.py`` checks this).

A hand-written registry rather than Hydra's ``_target_`` instantiation: an entry carries more
than a constructor (its config schema, which engines can run it, its paper name), and the names
must be known without building anything to give one-line errors at compose time.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """The options of one kind, filled by the modules of ``package`` (None: by the module that
    creates the registry, which then holds every option itself)."""

    def __init__(self, kind: str, package: str | None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = False
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@ALGORITHMS.register("fedprox") class FedProx(...)``."""

        def add(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def _discover(self) -> None:
        with self._lock:
            if self._discovered or self.package is None:
                self._discovered = True
                return
            package = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(package.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._discovered = True

    def names(self) -> list[str]:
        """The registered names, in the order they were registered."""
        self._discover()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The entry called ``name``; KeyError naming what is allowed."""
        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"{self.kind}={name!r} is unknown; allowed: {', '.join(self.names())}"
            ) from None

    def items(self) -> list[tuple[str, T]]:
        self._discover()
        return list(self._entries.items())
