"""From a composed config to a checked ``RunConfig``: plug-in schemas, then the cross-field rules.

Hydra composes ``conf/config.yaml``; ``typed`` converts it once, from the entry point
(``fedlab.__main__``) and from the Python API (``fedlab.api``):

1. ``OmegaConf.to_object``: the root schema and the fixed groups, each checking its own ranges
   (``fedlab.config``);
2. each plug-in group's mapping into the chosen option's own schema (``convert``): unknown keys
   and wrong types are one line naming the key and the options that do have it; a plug-in from
   outside fedlab (``_target_: package.Class`` in the user's config directory) is registered
   here under the option's name, the name of its file;
3. the rules that relate one group to another (``validate``): clients against the data, the
   model against the data, each option's engines and its own ``check`` against the whole run,
   placement, and whether a round's local work fits in memory.

Every rule raises ``ConfigError`` with one line, before TensorFlow is imported.
"""

from __future__ import annotations

import difflib
import importlib
import os
import typing
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedlab.config import ClientSampling, Device, Engine, PlacementName, RunConfig
from fedlab.errors import ConfigError
from fedlab.plugin import PluginConfig, Registry

# The groups whose options are plug-ins, in the order they are converted and checked: group ->
# its registry (imported on first use).
PLUGIN_GROUPS = {
    "dataset": "fedlab.data:DATASETS",
    "partition": "fedlab.data.partition:PARTITIONS",
    "model": "fedlab.models:MODELS",
    "client_optimizer": "fedlab.optimizers:OPTIMIZERS",
    "server_optimizer": "fedlab.optimizers:OPTIMIZERS",
    "algorithm": "fedlab.algorithms:ALGORITHMS",
    "aggregator": "fedlab.aggregators:AGGREGATORS",
    "privacy": "fedlab.privacy:PRIVACY",
    "compression": "fedlab.compression:COMPRESSION",
    "attack": "fedlab.attacks:ATTACKS",
}
# The group that holds several options at once, each under its own name (a mapping of them).
CALLBACKS = ("callbacks", "fedlab.callbacks:CALLBACKS")

# A round's local work as memory (see _check_local_work_fits): each of its m clients visits
# E x n examples, in an order held as one int64 index per visit (fedlab.core.sampling.local_order)
# for the whole round; the client being trained makes about three more such copies (stacking the
# epochs, the engines' int32 copy and TensorFlow's, the batch bounds). The engines index one
# client's visits with int32.
_BYTES_PER_VISIT = 8
_TRAINING_COPIES = 3
_MAX_VISITS_PER_CLIENT = 2**31 - 1


def typed(composed: Any, choices: dict[str, str] | None = None) -> RunConfig:
    """The composed config (a DictConfig of ``conf/config.yaml``) as a checked ``RunConfig``.
    ``choices``: the option Hydra chose for each group (``HydraConfig.runtime.choices``), which
    names a plug-in from outside fedlab after its file."""
    cfg = OmegaConf.to_object(composed)
    convert(cfg, choices or {})
    validate(cfg)
    return cfg


def registry(where: str) -> Registry:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def plugin_registry(group: str) -> Registry | None:
    """The registry of a plug-in group (``algorithm`` ...), None for any other key."""
    if group == CALLBACKS[0]:
        return registry(CALLBACKS[1])
    where = PLUGIN_GROUPS.get(group)
    return registry(where) if where else None


def convert(cfg: RunConfig, choices: dict[str, str]) -> None:
    """Each plug-in group of ``cfg``, a mapping, replaced by its option's schema (in place)."""
    for group, where in PLUGIN_GROUPS.items():
        node = getattr(cfg, group)
        setattr(cfg, group, plugin_config(group, node, registry(where), choices.get(group)))
    given = cfg.callbacks or {}
    if not isinstance(given, dict):
        raise ConfigError(
            f"callbacks={given!r} is invalid; allowed: a mapping of callback names to their "
            "keys (conf/callbacks/default.yaml)"
        )
    callbacks = registry(CALLBACKS[1])
    cfg.callbacks = {
        name: plugin_config(f"callbacks.{name}", node or {}, callbacks, name)
        for name, node in given.items()
        if node is not None  # callbacks.NAME=null leaves it out, as ~callbacks.NAME does
    }


def plugin_config(group: str, node: Any, registry: Registry, choice: str | None = None) -> Any:
    """``node`` (the composed mapping of ``group``) as the schema its option registers.

    ``choice`` is the option's name where the mapping does not say it (a plug-in from outside
    fedlab is named after its YAML file). Unknown keys and wrong types become one line naming
    the key and what is allowed; the schema's own ``__post_init__`` (and ``validate(group)``, for
    a schema shared by several groups) checks its ranges.
    """
    if is_dataclass(node):
        return node  # built in code
    data = dict(node)
    target = data.get("_target_")
    name = data.get("name") or choice
    if target is not None:
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(
                f"{group}._target_={target!r} is invalid; allowed: a dotted path, module.Class"
            )
        name = name or target.rsplit(".", 1)[-1].lower()
        registry.add_target(name, target)
    data["name"] = name
    try:
        entry = registry.get(name)
    except KeyError:
        raise ConfigError(
            f"{group}.name={name!r} is unknown; allowed: {', '.join(registry.names())}"
        ) from None
    config_cls = entry.Config
    if not (isinstance(config_cls, type) and issubclass(config_cls, PluginConfig)):
        raise ConfigError(
            f"{group}={name}: its Config {config_cls!r} is not a dataclass extending "
            "fedlab.plugin.PluginConfig; allowed: such a dataclass (or none: the kind's own)"
        )
    for key in sorted(set(data) - {f.name for f in fields(config_cls)}):
        raise ConfigError(unknown_key_message(group, key, data[key], name, registry))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config_cls), data)
        typed_node = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        kind = _field_types(config_cls).get(key, "its type")
        raise ConfigError(
            f"{group}.{key}={data.get(key)!r} is invalid; allowed: {_type_words(kind)}"
        ) from None
    validate_values = getattr(typed_node, "validate", None)
    if callable(validate_values):
        validate_values(group)
    return typed_node


def unknown_key_message(group: str, key: str, value: Any, chosen: str, registry: Registry) -> str:
    """``algorithm.mu=0.1 has no effect with algorithm=fedavg; it applies to algorithm=fedprox``."""

    def keys_of(entry: Any) -> set[str]:
        return {f.name for f in fields(entry.Config)}

    kind = group.split(".")[0]
    if chosen in registry and key in keys_of(registry.get(chosen)):
        # The option has the key; its YAML file does not set it, so Hydra wants a "+".
        return (
            f"{group}.{key} is not in {kind}={chosen}'s YAML file; set it with "
            f"+{group}.{key}={value}"
        )
    users = [n for n, e in registry.items() if key in keys_of(e)]
    if users and "." not in group:
        return (
            f"{group}.{key}={value} has no effect with {kind}={chosen}; "
            f"it applies to {kind}={'|'.join(users)}"
        )
    option = f"{kind}={chosen}" if "." not in group else f"callback {chosen}"
    if chosen not in registry:  # a plug-in from outside fedlab, not imported yet
        return f"unknown config key '{group}.{key}': not a key of {option} (see its YAML file)"
    own = sorted(keys_of(registry.get(chosen)) - {"name", "_target_"})
    has = f"the keys {', '.join(own)}" if own else "no keys of its own"
    close = difflib.get_close_matches(key, own, n=1)
    hint = f"; did you mean '{group}.{close[0]}'?" if close else ""
    return f"unknown config key '{group}.{key}': {option} has {has}{hint}"


def _field_types(config_cls: type) -> dict[str, Any]:
    """A dataclass's field types as types: under ``from __future__ import annotations`` a
    field's ``type`` is the annotation's text ("Corpus"), which names no allowed value."""
    try:
        return typing.get_type_hints(config_cls)
    except (NameError, TypeError):
        return {f.name: f.type for f in fields(config_cls)}


def _type_words(kind: Any) -> str:
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "one of " + ", ".join(str(m.value) for m in kind)
    text = str(getattr(kind, "__name__", kind))
    return {"float": "a number", "int": "an integer", "bool": "true or false"}.get(text, text)


# -- the cross-field rules ------------------------------------------------------------------


def validate(run: RunConfig) -> None:
    """Every rule that relates one part of a converted ``run`` to another; ConfigError."""
    _check_clients_fit_the_data(run)
    _check_model_fits_the_data(run)
    for group, where in PLUGIN_GROUPS.items():
        _check_option(group, getattr(run, group), registry(where), run)
    callbacks = registry(CALLBACKS[1])
    for name, chosen in run.callbacks.items():
        _check_option(f"callbacks.{name}", chosen, callbacks, run)
    if "evaluation" not in run.callbacks:
        raise ConfigError(
            "callbacks.evaluation is required: a run's result (its test accuracy, rounds to "
            "target) comes from it; allowed: keep it, with eval_every=N to evaluate every N rounds"
        )
    if run.holdout > 0 and "personalized" not in run.callbacks:
        raise ConfigError(
            f"holdout={run.holdout} holds out training examples that only "
            "callbacks.personalized evaluates, and the run's callbacks leave it out; allowed: "
            "holdout=0, or keep callbacks.personalized"
        )
    _check_placement(run)
    _check_local_work_fits(run)
    _check_installed(run)


def _check_option(group: str, chosen: Any, registry: Registry, run: RunConfig) -> None:
    """The option's engines, then its own rules against the whole run."""
    option = registry.of(chosen)
    engine = run.engine.value
    if engine not in option.engines:
        why = f" ({option.missing_on_tff})" if option.missing_on_tff else ""
        raise ConfigError(
            f"{group}={chosen.name} cannot run on engine={engine}{why}; "
            f"allowed: engine={'|'.join(option.engines)}"
        )
    option.check(chosen, run)


def _check_clients_fit_the_data(run: RunConfig) -> None:
    from fedlab.data import DATASETS
    from fedlab.data.partition import PARTITIONS

    spec = DATASETS.of(run.dataset)
    examples = spec.train_examples_of(run.dataset)
    k = run.num_clients
    part = run.partition.name
    partition = PARTITIONS.of(run.partition)
    natural = spec.num_natural_clients(run.dataset)
    if partition.needs_natural_clients:
        with_natural = [n for n, s in DATASETS.items() if s.num_natural_clients(s.Config())]
        if natural is None:
            raise ConfigError(
                f"partition={part} needs a dataset with clients of its own; "
                f"dataset={run.dataset.name} has none; allowed: dataset="
                f"{'|'.join(with_natural)}, or a synthetic partition"
            )
        if k > natural:
            raise ConfigError(
                f"num_clients={k} is invalid with partition={part}; allowed: at most "
                f"{natural} ({run.dataset.name}'s own clients)"
            )
    elif k > examples:
        raise ConfigError(
            f"num_clients={k} is invalid; allowed: at most {examples} "
            f"(one example each from {run.dataset.name}'s {examples})"
        )
    if partition.needs_labels and not spec.example_labels:
        without_labels = [
            n
            for n, p in PARTITIONS.items()
            if not p.needs_labels and (natural is not None or not p.needs_natural_clients)
        ]
        with_labels = [n for n, s in DATASETS.items() if s.example_labels]
        raise ConfigError(
            f"partition={part} sorts examples by their class, and "
            f"dataset={run.dataset.name}'s examples have no single class (sequence "
            f"targets); allowed there: partition={'|'.join(without_labels)}; label partitions "
            f"on dataset={'|'.join(with_labels)}"
        )
    if run.client_sampling is ClientSampling.cyclic:
        m = run.clients_per_round
        if k % m:
            raise ConfigError(
                f"client_sampling=cyclic needs num_clients ({k}) to be a multiple of the "
                f"clients per round ({m} = max(C*K, 1)); allowed otherwise: "
                "client_sampling=uniform"
            )


def _check_model_fits_the_data(run: RunConfig) -> None:
    from fedlab.data import DATASETS
    from fedlab.models import MODELS, fits

    spec = DATASETS.of(run.dataset)
    MODELS.of(run.model)  # a plug-in from outside fedlab is known from here on
    shape, one_class = tuple(spec.input_shape), spec.example_labels

    def takes(model: str) -> bool:
        return fits(model, shape, one_class)

    if not one_class:
        examples = f"sequences of {shape[0]} ids, a class at every position"
    elif len(shape) == 1:
        examples = f"examples of {shape[0]} features, one class each"
    else:
        examples = f"{'x'.join(map(str, shape))} examples of one class"
    if not takes(run.model.name):
        raise ConfigError(
            f"model={run.model.name} does not fit dataset={run.dataset.name} ({examples}); "
            f"allowed with it: model={'|'.join(m for m in MODELS.names() if takes(m))}"
        )


def _check_placement(run: RunConfig) -> None:
    """What ``placement=ray`` can compute from the actors' partial sums
    (``fedlab.backends.fast.placement``)."""
    if run.placement.name is not PlacementName.ray:
        return
    if run.engine is not Engine.fast:
        raise ConfigError(
            f"placement=ray cannot run on engine={run.engine.value}: it spreads engine=fast's "
            "clients over Ray actors; allowed: engine=fast, or placement=local"
        )
    from fedlab.aggregators import AGGREGATORS

    if not AGGREGATORS.of(run.aggregator).summable:
        summable = [name for name, entry in AGGREGATORS.items() if entry.summable]
        raise ConfigError(
            f"aggregator={run.aggregator.name} cannot run with placement=ray: it needs every "
            "client's update, and each actor returns one partial sum; allowed with "
            f"placement=ray: aggregator={'|'.join(summable)}, or placement=local"
        )
    if run.hardware.device is not Device.cpu:
        raise ConfigError(
            f"placement=ray trains on the actors' CPUs, not with hardware={run.hardware.device}; "
            "allowed: hardware=cpu, or placement=local"
        )
    m, actors = run.clients_per_round, run.placement.actors
    if actors > m:
        raise ConfigError(
            f"placement.actors={actors} is more than the {m} clients a round samples "
            f"(C={run.C}, num_clients={run.num_clients}): an actor would be idle; allowed: "
            f"1 <= placement.actors <= {m}"
        )


def _check_installed(run: RunConfig) -> None:
    """An engine or placement whose packages are an extra this environment lacks (TFF, Ray):
    one line naming the extra, before anything loads."""
    from fedlab.backends import check_installed

    check_installed(f"engine={run.engine.value}")
    check_installed(f"placement={run.placement.name.value}")


def largest_client(run: RunConfig) -> int:
    """The most examples a client holds under the run's partition, known without loading."""
    from fedlab.data import DATASETS
    from fedlab.data.partition import PARTITIONS

    examples = DATASETS.of(run.dataset).train_examples_of(run.dataset)
    return PARTITIONS.of(run.partition).largest_client(run.partition, examples, run.num_clients)


def memory_bytes() -> int:
    """This machine's memory, or the container's limit (cgroup v2 or v1) where that is less."""
    found = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            found = min(found, int(text))
    return found


def _check_local_work_fits(run: RunConfig) -> None:
    """E large enough that a round's visiting order cannot be held fails now, in one line,
    instead of hanging while the first round builds it (E=10^12 once printed nothing)."""
    m, n, epochs = run.clients_per_round, largest_client(run), run.E
    memory = memory_bytes()
    per_epoch = _BYTES_PER_VISIT * n * (m + _TRAINING_COPIES)
    by_memory, by_index = memory // per_epoch, _MAX_VISITS_PER_CLIENT // n
    limit = min(by_memory, by_index)
    if epochs <= limit:
        return
    if by_memory <= by_index:
        why = (
            f"needs {per_epoch * epochs / 1e9:,.1f} GB for its visiting order, and this "
            f"machine has {memory / 1e9:,.1f} GB"
        )
    else:
        why = f"is over the {_MAX_VISITS_PER_CLIENT} visits a client that the engines index"
    raise ConfigError(
        f"E={epochs} is invalid: a round's local training ({m} client{'s' * (m > 1)} x E "
        f"epochs x {n} examples) {why}; allowed here: 1 <= E <= {limit}"
    )
