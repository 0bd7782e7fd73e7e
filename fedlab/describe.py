"""The command line's one-line errors: bad input as the key or value at fault and what is allowed.

Hydra and OmegaConf report composition errors as multi-line text with a traceback hint; fedlab's
entry point lets them raise (``HYDRA_FULL_ERROR=1`` internally) and turns the ones caused by the
user's input into one line here, as it does fedlab's own errors (``fedlab.errors``, whose
messages are one line already). Anything not recognised is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Sequence

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from fedlab.config import RunConfig
from fedlab.errors import FedlabError

# Read at import, before the entry point sets HYDRA_FULL_ERROR=1 for its own use: whether the
# user asked for full tracebacks.
FULL_ERROR = os.environ.get("HYDRA_FULL_ERROR") == "1"


_ALLOWED_TYPES = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false"}
_KEY_HINTS = {"B": ", or null for the full local dataset (the paper's B=∞)"}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else text


def _known_keys() -> list[str]:
    from dataclasses import fields

    return [f.name for f in fields(RunConfig)]


def _command_line_value(key: str, overrides: Sequence[str]) -> str | None:
    """The value ``key`` is given in the overrides (the last one), if it is."""
    found = None
    for arg in overrides:
        name, sep, value = arg.lstrip("+~").partition("=")
        if sep and name == key:
            found = value
    return found


def _plugin_key(dotted: str, overrides: Sequence[str]) -> str | None:
    """``algorithm.mu`` set with an algorithm that has no ``mu``: which options have it."""
    from fedlab.validation import plugin_registry, unknown_key_message

    group, _, key = dotted.partition(".")
    if group == "callbacks" and key.count(".") == 1:  # callbacks.NAME.KEY: that callback's
        name, _, key = key.partition(".")
        registry = plugin_registry(group)
        value = _command_line_value(dotted, overrides) or "?"
        return unknown_key_message(f"callbacks.{name}", key, value, name, registry)
    registry = plugin_registry(group) if key and "." not in key else None
    if registry is None:
        return None
    chosen = _command_line_value(group, overrides) or _default_option(group) or "?"
    value = _command_line_value(dotted, overrides) or "?"
    return unknown_key_message(group, key, value, chosen, registry)


def _default_option(group: str) -> str | None:
    """The option conf/config.yaml's defaults list chooses for ``group``."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    # conf/ is the package fedlab.conf (pyproject.toml maps it), in a wheel and in the checkout.
    config = OmegaConf.create(files("fedlab.conf").joinpath("config.yaml").read_text())
    for entry in config.get("defaults", []):
        if isinstance(entry, dict | DictConfig) and group in entry:
            return str(entry[group])
    return None


def _omegaconf(err: OmegaConfBaseException, overrides: Sequence[str]) -> str:
    key = getattr(err, "full_key", None) or ""
    msg = _first_line(getattr(err, "msg", None) or str(err))
    if isinstance(err, ConfigKeyError | ConfigAttributeError):
        bad = re.search(r"Key '([^']+)'", msg)
        name = bad.group(1) if bad else key
        plugin = _plugin_key(key or name, overrides)
        if plugin:
            return plugin
        close = difflib.get_close_matches(name.split(".")[-1], _known_keys(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close and "." not in name else ""
        return f"unknown config key '{key or name}'{hint} (see python -m fedlab --help)"
    if isinstance(err, MissingMandatoryValue):
        return f"{key} is required but has no value"
    if isinstance(err, ValidationError):
        found = re.search(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", msg)
        if found and key:
            value, kind = found.groups()
            allowed = _ALLOWED_TYPES.get(kind, kind)
            hint = _KEY_HINTS.get(key, "")
            return f"{key}={value!r} is invalid; allowed: {allowed}{hint}"
        return f"{key}: {msg}" if key else msg
    return f"{key}: {msg}" if key else msg


def describe(err: BaseException, overrides: Sequence[str] | None = None) -> str | None:
    """One line for an error caused by the user's input, or None if ``err`` is a bug.
    ``overrides``: what the user gave (default: the command line's arguments)."""
    overrides = sys.argv[1:] if overrides is None else list(overrides)
    if isinstance(err, FedlabError):
        return _first_line(str(err))
    if isinstance(err, MissingConfigException):
        options = getattr(err, "options", None)
        missing = getattr(err, "missing_cfg_file", None) or ""
        if options and "/" in missing:
            group, option = missing.rsplit("/", 1)
            allowed = ", ".join(o for o in options if not o.startswith("schema_"))
            return f"{group}={option} is not an option; allowed: {allowed}"
        return _first_line(str(err))
    if isinstance(err, OSError) and err.filename:
        # e.g. an output directory (hydra.run.dir) or checkpoint_dir that cannot be written
        return f"cannot use {err.filename}: {err.strerror}"
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override: {_first_line(str(err))}"
    if isinstance(err, OmegaConfBaseException):
        return _omegaconf(err, overrides)
    if isinstance(err, ConfigCompositionException):
        cause = err.__cause__
        if isinstance(cause, BaseException):
            inner = describe(cause, overrides)
            if inner is not None:
                return inner
        # "In 'partition/x': ConfigKeyError raised while composing config:\nKey 'y' not in ..."
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        where = re.match(r"In '([^']+)'", lines[0]) if lines else None
        if where and len(lines) > 1:
            return f"in conf/{where.group(1)}.yaml: {lines[1]}"
        return _first_line(str(err))
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None
    if isinstance(err, MlflowException):
        return f"MLflow: {_first_line(err.message)}"
    return None
