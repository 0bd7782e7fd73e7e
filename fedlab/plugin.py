"""What every option of a plug-in group is, and the registries that find them by name.

Every kind of option a run chooses by name (an algorithm, aggregator, privacy mechanism,
compressor, dataset, model, partition, optimizer or callback) is a ``Plugin``: a name, set once by
the registry it is registered in; a config schema (``Config``, a dataclass extending
``PluginConfig``) that its YAML file fills; the engines it runs on; and its cross-field checks
against the whole run (``check``). Each kind has a base class with its own hooks (``Algorithm``,
``Aggregator``, ...), which extends ``Plugin``.

A kind's package registers its options with a decorator (``@ALGORITHMS.register("fedprox")``);
the registry imports every module of the package the first time a name is looked up, so adding a
built-in option is one module and its YAML file. A plug-in from outside fedlab is named by its
YAML file's ``_target_`` (Hydra's convention: ``_target_: mypackage.MyAlgorithm``) in the user's
own config directory; ``fedlab.validation`` registers it under the option's name (the file's
name) when the config is composed, and keeps the target in the option's config, so that another
process that receives the config (a Ray actor) finds it too (``Registry.of``).

Registering a class (not Hydra's ``instantiate``): an entry carries more than a constructor (its
schema, which engines run it, its paper name), and the names must be known without building
anything, to give one-line errors when the config is composed. So a plug-in module must be cheap
to import: NumPy at its top, TensorFlow only inside the functions that train
(``tests/test_layout.py`` checks this).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from omegaconf import MISSING

from fedlab.errors import ConfigError


@dataclass
class PluginConfig:
    """The keys every option has; an option with keys of its own extends it."""

    name: str = MISSING
    #: A plug-in from outside fedlab: the dotted path of its class (null for fedlab's own).
    _target_: str | None = None


class Plugin:
    """An option of a plug-in group: its name, schema, engines and checks."""

    #: Set by ``Registry.register``: the option's name, as written in ``GROUP=NAME``.
    name: ClassVar[str] = ""
    #: Its config schema; ``conf/<group>/<name>.yaml`` fills it.
    Config: ClassVar[type] = PluginConfig
    #: The engines that can run it.
    engines: ClassVar[tuple[str, ...]] = ("fast", "tff")
    #: Why it does not run on ``engine=tff``, for the one-line refusal (when it does not).
    missing_on_tff: ClassVar[str] = ""

    @classmethod
    def check(cls, cfg: Any, run: Any) -> None:
        """Cross-field rules of its config ``cfg`` against the whole run config ``run``; raise
        ``ConfigError`` with one line."""

    @classmethod
    def adapt(cls, entry: Any) -> type:
        """``entry`` as an option of this kind: a subclass of it as it is; a kind that takes
        other things (a model's builder function) overrides this."""
        if isinstance(entry, type) and issubclass(entry, cls):
            return entry
        raise TypeError(f"{entry!r} is not a subclass of {cls.__module__}.{cls.__qualname__}")


T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """The options of one kind: ``base`` is its base class (None: entries of any kind, kept as
    they are); the options are found in the modules of ``package`` (None: the module that creates
    the registry holds them all)."""

    def __init__(self, kind: str, package: str | None, base: type[Plugin] | None = None) -> None:
        self.kind = kind
        self.package = package
        self.base = base
        self._entries: dict[str, T] = {}
        self._discovered = False
        self._lock = threading.RLock()

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: ``@ALGORITHMS.register("fedprox") class FedProx(Algorithm): ...``. The
        option's name is set here, once. Returns what it decorates (a model's builder function
        stays a function; its adapted class is what the registry holds)."""

        def add(entry: Any) -> Any:
            self._add(name, self.base.adapt(entry) if self.base else entry)
            return entry

        return add

    def _add(self, name: str, option: T) -> T:
        with self._lock:
            known = self._entries.get(name)
            if known is not None and known is not option:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if isinstance(option, type):
                option.name = name
            self._entries[name] = option
        return option

    def add_target(self, name: str, target: str) -> T:
        """Register the class (or what ``base.adapt`` takes) at the dotted path ``target`` as
        option ``name``: a plug-in from outside fedlab. ConfigError in one line if it cannot be
        imported or is not of this kind."""
        module, _, attr = target.rpartition(".")
        where = f"{self.kind}={name}: _target_={target!r}"
        try:
            entry = getattr(importlib.import_module(module), attr) if module else None
        except ImportError as err:
            raise ConfigError(
                f"{where} cannot be imported ({err}); allowed: an importable "
                "dotted path, module.Class, on this Python's path"
            ) from None
        except AttributeError:
            entry = None
        if entry is None:
            raise ConfigError(f"{where} is not found; allowed: an importable dotted path, "
                              "module.Class")  # fmt: skip
        try:
            option = self.base.adapt(entry) if self.base else entry
        except TypeError as err:
            raise ConfigError(f"{where} is not a {self.kind} ({err})") from None
        with self._lock:
            known = self._entries.get(name)
            if known is not None and known is not option and name in self._builtin_names():
                raise ConfigError(
                    f"{where} has the name of fedlab's own {self.kind}={name}; allowed: "
                    "another file name for it"
                )
            if known is not option:
                self._entries.pop(name, None)
                self._add(name, option)
        return option

    def _builtin_names(self) -> set[str]:
        self._discover()
        return {n for n, e in self._entries.items() if e.__module__.startswith("fedlab.")}

    def of(self, cfg: Any) -> T:
        """The option a config ``cfg`` (with ``name`` and ``_target_``) is of; a plug-in from
        outside fedlab is registered here first if this process has not seen it yet."""
        target = getattr(cfg, "_target_", None)
        if target and cfg.name not in self._entries:
            return self.add_target(cfg.name, target)
        return self.get(cfg.name)

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
        """The option called ``name``; KeyError naming what is allowed."""
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
