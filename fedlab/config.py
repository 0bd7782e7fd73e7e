"""Typed configuration for one federated run, registered in Hydra's ConfigStore.

``conf/config.yaml`` extends ``RunConfig``, and every option under ``conf/<group>/`` merges into
its typed node (``partition: PartitionConfig``), so a misspelled key or a wrong type fails when
Hydra composes the config. ``__post_init__`` checks ranges and cross-field rules when the entry
point converts the composed config to these dataclasses (``OmegaConf.to_object``). The rest of
fedlab only ever sees these typed objects.

The groups whose options are plug-ins (``dataset``, ``model``, ``algorithm``, ``aggregator``,
``privacy``, ``compression``)
are typed here only as "a mapping"; each option's own schema is the dataclass its module
registers (``fedlab.registry``), and ``__post_init__`` converts the mapping into it, so a key the
chosen option does not have, or a wrong type, fails as early, in one line.

Names follow McMahan et al. 2017: ``C`` is the fraction of clients sampled per round, ``B`` the
local batch size (``null`` = the full local dataset, the paper's B=∞), ``E`` the number of local
epochs, ``num_clients`` is K.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from dataclasses import dataclass, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedlab.errors import ConfigError
from fedlab.optimizers import OPTIMIZERS


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _reject_unused(node: object, group: str, option: str, used_by: dict[str, set[str]]) -> None:
    """A key the chosen option ignores must keep its default: silently ignoring
    ``partition=iid partition.alpha=0.1`` would log a param that had no effect."""
    for key, options in used_by.items():
        default = type(node).__dataclass_fields__[key].default
        value = getattr(node, key)
        if option not in options and value != default:
            _require(
                False,
                f"{group}.{key}={value} has no effect with {group}={option}; "
                f"it applies to {group}={'|'.join(sorted(options))}",
            )


# The groups whose options are plug-ins: group -> its registry (imported on first use).
PLUGIN_GROUPS = {
    "dataset": "fedlab.data:DATASETS",
    "model": "fedlab.models:MODELS",
    "algorithm": "fedlab.algorithms:ALGORITHMS",
    "aggregator": "fedlab.aggregators:AGGREGATORS",
    "privacy": "fedlab.privacy:PRIVACY",
    "compression": "fedlab.compression:COMPRESSION",
}
# The plug-in groups whose option says which engines can run it and checks itself against the
# whole run (``engines``, ``check(cfg, run)``), in the order they are checked.
CHECKED_GROUPS = ("algorithm", "aggregator", "privacy", "compression")

# The keys that do not change a run's numbers: a checkpoint's key leaves them out (a run can be
# resumed or extended with other values), and the report puts runs that differ only in them (and
# in ``seed``) into one configuration. A prefix ending in "." covers a whole group.
NOT_IN_NUMBERS = (
    "hardware.",
    "tracking.",
    "rounds",
    "run_name",
    "checkpoint_every",
    "resume",
    "checkpoint_dir",
    "objective",
    "stop_at_target",
    "dataset.source",  # every MNIST source gives the same arrays (tests/test_mnist.py)
    "dataset.path",
    "dataset.cache_dir",  # where the preprocessed Shakespeare file is kept
    "placement.address",  # which Ray cluster, not how the cohort is cut
    "placement.cpus_per_actor",  # threads inside an actor: each client is computed alone
)
# The engines compute the same arithmetic, equal up to float32 round-off: one configuration in a
# report, but a checkpoint is bit-exact only on the engine that wrote it, so it keys on this.
# So does the placement of a round's clients: the actors' partial sums are added in another
# order than one process adds the clients' updates (fedlab.backends.fast.placement).
SAME_UP_TO_ROUND_OFF = ("engine", "placement.name", "placement.actors")

# A round's local work as memory (see RunConfig._check_local_work_fits): each of its m clients
# visits E x n examples, in an order held as one int64 index per visit
# (fedlab.sampling.local_order) for the whole round; the client being trained makes about three
# more such copies (stacking the epochs, the engines' int32 copy and TensorFlow's, the batch
# bounds). The engines index one client's visits with int32.
_BYTES_PER_VISIT = 8
_TRAINING_COPIES = 3
_MAX_VISITS_PER_CLIENT = 2**31 - 1


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


def affects_numbers(key: str, exact: bool) -> bool:
    """Whether the dotted config ``key`` changes a run's numbers (bit for bit if ``exact``)."""
    ignored = NOT_IN_NUMBERS if exact else NOT_IN_NUMBERS + SAME_UP_TO_ROUND_OFF
    return not any(key == k or (k.endswith(".") and key.startswith(k)) for k in ignored)


class PartitionName(StrEnum):
    iid = "iid"
    shards = "shards"
    dirichlet = "dirichlet"
    quantity_skew = "quantity_skew"
    labels_per_client = "labels_per_client"
    natural = "natural"


class SizeDistribution(StrEnum):
    power_law = "power_law"
    lognormal = "lognormal"


class ShardAssignment(StrEnum):
    random = "random"
    fixed = "fixed"


# The optimizers fedlab.optimizers registers (sgd, sgdm, adam, yogi, adagrad, ...).
OptimizerName = StrEnum("OptimizerName", {name: name for name in OPTIMIZERS.names()})


class Engine(StrEnum):
    tff = "tff"  # TFF's build_weighted_fed_avg, computed in TFF's worker process
    fast = "fast"  # the same arithmetic in fedlab's process with plain TensorFlow


class PlacementName(StrEnum):
    local = "local"  # every client of a round in this process, on threads
    ray = "ray"  # a round's clients spread over Ray actors, one slice each


class Objective(StrEnum):
    """What a run returns to a sweeper (Optuna optimizes it)."""

    best_accuracy = "best_accuracy"  # best test accuracy over the run: maximize
    final_accuracy = "final_accuracy"  # test accuracy after the last round: maximize
    rounds_to_target = "rounds_to_target"  # minimize; never reaching it scores rounds + 1


class Device(StrEnum):
    cpu = "cpu"
    gpu = "gpu"


class TrackingBackend(StrEnum):
    mlflow = "mlflow"
    none = "none"


class ClientSampling(StrEnum):
    uniform = "uniform"
    cyclic = "cyclic"


@dataclass
class PartitionConfig:
    name: PartitionName = MISSING
    # shards: the paper's pathological non-IID split (sort by label, cut, deal out).
    shards_per_client: int = 2
    shard_size: int | None = None  # null: examples // (num_clients * shards_per_client)
    assignment: ShardAssignment = ShardAssignment.random
    # dirichlet: label proportions per client ~ Dirichlet(alpha).
    alpha: float = 0.5
    # quantity_skew: client sizes from a power law (Pareto exponent) or a log-normal (sigma).
    distribution: SizeDistribution = SizeDistribution.power_law
    exponent: float = 1.5
    # labels_per_client: each client holds exactly this many classes.
    classes_per_client: int = 2

    def __post_init__(self) -> None:
        _require(
            self.shards_per_client >= 1,
            f"partition.shards_per_client={self.shards_per_client} is invalid; "
            "allowed: an integer >= 1",
        )
        _require(
            self.shard_size is None or self.shard_size >= 1,
            f"partition.shard_size={self.shard_size} is invalid; allowed: null or an integer >= 1",
        )
        _require(
            self.alpha > 0 and math.isfinite(self.alpha),
            f"partition.alpha={self.alpha} is invalid; allowed: a finite number > 0",
        )
        _require(
            self.exponent > 0 and math.isfinite(self.exponent),
            f"partition.exponent={self.exponent} is invalid; allowed: a finite number > 0",
        )
        _require(
            self.classes_per_client >= 1,
            f"partition.classes_per_client={self.classes_per_client} is invalid; "
            "allowed: an integer >= 1",
        )
        _reject_unused(
            self,
            "partition",
            self.name.value,
            {
                "shards_per_client": {"shards"},
                "shard_size": {"shards"},
                "assignment": {"shards"},
                "alpha": {"dirichlet"},
                "distribution": {"quantity_skew"},
                "exponent": {"quantity_skew"},
                "classes_per_client": {"labels_per_client"},
            },
        )


@dataclass
class OptimizerConfig:
    """One schema for both ``client_optimizer`` and ``server_optimizer`` (Reddi et al. 2020)."""

    name: OptimizerName = MISSING
    lr: float = MISSING
    momentum: float = 0.9  # sgdm
    beta_1: float = 0.9  # adam, yogi
    beta_2: float = 0.999  # adam, yogi
    epsilon: float = 1e-7  # adam, yogi, adagrad
    initial_accumulator: float = 0.1  # adagrad, yogi (initial preconditioner value)

    def validate(self, group: str) -> None:
        _require(
            self.lr > 0 and math.isfinite(self.lr),
            f"{group}.lr={self.lr} is invalid; allowed: a finite number > 0",
        )
        _require(
            0 <= self.momentum < 1, f"{group}.momentum={self.momentum} is invalid; allowed: [0, 1)"
        )
        for key in ("beta_1", "beta_2"):
            value = getattr(self, key)
            _require(0 <= value < 1, f"{group}.{key}={value} is invalid; allowed: [0, 1)")
        _require(self.epsilon > 0, f"{group}.epsilon={self.epsilon} is invalid; allowed: > 0")
        _require(
            self.initial_accumulator >= 0,
            f"{group}.initial_accumulator={self.initial_accumulator} is invalid; allowed: >= 0",
        )
        # Which optimizers read each key, from what each one declares it uses.
        used_by: dict[str, set[str]] = {}
        for name, optimizer in OPTIMIZERS.items():
            for key in optimizer.uses:
                used_by.setdefault(key, set()).add(name)
        _reject_unused(self, group, self.name.value, used_by)


@dataclass
class HardwareConfig:
    device: Device = Device.cpu
    intra_op_threads: int = 0  # 0: TensorFlow's default (all cores)
    inter_op_threads: int = 0
    gpu_memory_growth: bool = True

    def __post_init__(self) -> None:
        for key in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, key)
            _require(value >= 0, f"hardware.{key}={value} is invalid; allowed: 0 (default) or >= 1")


# placement.address: Ray's own forms (ray.init's address), or null for a private local cluster.
_RAY_ADDRESS = re.compile(r"auto|[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


@dataclass
class PlacementConfig:
    """Where the clients of one round train (``engine=fast``): ``local`` in this process, or
    ``ray``: spread over ``actors`` Ray actors of ``cpus_per_actor`` CPUs each.

    A group of its own rather than keys of ``hardware``: ``hardware`` never changes a run's
    numbers, and placement does, at float32 round-off (the actors' partial sums are added in
    another order), so a checkpoint keys on it (``SAME_UP_TO_ROUND_OFF``); and its keys apply to
    one option only, which a group checks (``_reject_unused``). What "placement" means, and what
    it supports, is in ``fedlab.backends.fast.placement``.
    """

    name: PlacementName = PlacementName.local
    address: str | None = None  # ray: auto | HOST:PORT; null starts a Ray of its own, here
    actors: int = 2  # ray: how many slices a round's clients are cut into, one actor each
    cpus_per_actor: int = 1  # ray: the CPUs Ray gives each actor; it trains that many at once

    def __post_init__(self) -> None:
        _require(
            self.actors >= 1, f"placement.actors={self.actors} is invalid; allowed: an integer >= 1"
        )
        _require(
            self.cpus_per_actor >= 1,
            f"placement.cpus_per_actor={self.cpus_per_actor} is invalid; allowed: an integer >= 1",
        )
        _require(
            self.address is None or bool(_RAY_ADDRESS.fullmatch(self.address)),
            f"placement.address={self.address!r} is invalid; allowed: null (a Ray of its own on "
            "this machine), auto (the cluster this machine belongs to) or HOST:PORT (the head's)",
        )
        keys = ("address", "actors", "cpus_per_actor")
        _reject_unused(self, "placement", self.name.value, {key: {"ray"} for key in keys})


# What MLflow 3.17's tracking store accepts ("" is a plain local path).
TRACKING_URI_SCHEMES = ("", "sqlite", "file", "http", "https", "postgresql", "mysql", "mssql")


@dataclass
class TrackingConfig:
    backend: TrackingBackend = TrackingBackend.mlflow
    uri: str | None = None  # null: sqlite:///<directory the command runs from>/mlflow.db
    experiment: str = "fedlab"
    log_model: bool = True  # the final weights as an artifact; turn off for large sweeps

    def __post_init__(self) -> None:
        if self.uri is not None:
            scheme = self.uri.split("://", 1)[0] if "://" in self.uri else ""
            schemes = ", ".join(f"{s}://" for s in TRACKING_URI_SCHEMES if s)
            _require(
                scheme in TRACKING_URI_SCHEMES,
                f"tracking.uri={self.uri!r} has an unknown scheme; allowed: null (a SQLite file "
                f"here) or a URI starting with {schemes}",
            )
            from fedlab.credentials import refuse_password

            refuse_password("tracking.uri", self.uri)
        _require(
            bool(self.experiment.strip()),
            "tracking.experiment='' is invalid; allowed: a non-empty name",
        )


@dataclass
class RunConfig:
    """The root config: the groups plus the paper's knobs."""

    # Plug-in groups: a mapping here, converted to the chosen option's schema in __post_init__.
    dataset: Any = MISSING
    partition: PartitionConfig = MISSING
    model: Any = MISSING
    algorithm: Any = MISSING
    aggregator: Any = MISSING
    privacy: Any = MISSING
    compression: Any = MISSING
    client_optimizer: OptimizerConfig = MISSING
    server_optimizer: OptimizerConfig = MISSING
    hardware: HardwareConfig = MISSING
    placement: PlacementConfig = MISSING
    tracking: TrackingConfig = MISSING

    C: float = 0.1  # fraction of clients per round; 0.0 means one client per round
    B: int | None = 10  # local batch size; null means the full local dataset (B=∞)
    E: int = 1  # local epochs
    num_clients: int = 100  # K
    rounds: int = 1000
    seed: int = 0
    eval_every: int = 1
    # Datasets with a test split per client: how many clients to evaluate (a seeded sample, the
    # same every round); null: all of them. Centralised test sets ignore it.
    eval_clients: int | None = None
    target_accuracy: float = 0.99
    client_sampling: ClientSampling = ClientSampling.uniform
    engine: Engine = Engine.fast  # what computes the rounds: same arithmetic, same metrics
    objective: Objective = Objective.best_accuracy  # what the run returns to a sweeper
    stop_at_target: bool = False  # end the run at the round it reaches target_accuracy
    run_name: str | None = None  # MLflow run name; null: built from the overrides
    checkpoint_every: int = 1  # rounds between checkpoints; 0: none
    resume: bool = True  # continue from this config's checkpoint, if there is one
    checkpoint_dir: str | None = None  # null: ./checkpoints where the command runs

    def __post_init__(self) -> None:
        from fedlab.models import ModelConfig

        for group in PLUGIN_GROUPS:
            schema = ModelConfig if group == "model" else None
            setattr(
                self,
                group,
                plugin_config(group, getattr(self, group), plugin_registry(group), schema),
            )
        _require(0.0 <= self.C <= 1.0, f"C={self.C} is invalid; allowed: 0 <= C <= 1")
        _require(
            self.B is None or self.B >= 1,
            f"B={self.B} is invalid; allowed: an integer >= 1, or null for the full local dataset",
        )
        _require(self.E >= 1, f"E={self.E} is invalid; allowed: an integer >= 1")
        _require(self.num_clients >= 1, f"num_clients={self.num_clients} is invalid; allowed: >= 1")
        _require(self.rounds >= 1, f"rounds={self.rounds} is invalid; allowed: an integer >= 1")
        _require(self.seed >= 0, f"seed={self.seed} is invalid; allowed: an integer >= 0")
        _require(self.eval_every >= 1, f"eval_every={self.eval_every} is invalid; allowed: >= 1")
        _require(
            self.eval_clients is None or self.eval_clients >= 1,
            f"eval_clients={self.eval_clients} is invalid; allowed: null (all) or an integer >= 1",
        )
        _require(
            0.0 < self.target_accuracy <= 1.0,
            f"target_accuracy={self.target_accuracy} is invalid; allowed: 0 < target_accuracy <= 1",
        )
        _require(
            self.checkpoint_every >= 0,
            f"checkpoint_every={self.checkpoint_every} is invalid; allowed: 0 (never) or >= 1",
        )
        self.client_optimizer.validate("client_optimizer")
        self.server_optimizer.validate("server_optimizer")
        self._check_clients_fit_the_data()
        self._check_model_fits_the_data()
        for group in CHECKED_GROUPS:
            chosen = getattr(self, group)
            plugin = plugin_registry(group).get(chosen.name)
            missing = getattr(plugin, "missing_on_tff", "")
            why = f" ({missing})" if missing else ""
            _require(
                self.engine.value in plugin.engines,
                f"{group}={chosen.name} cannot run on engine={self.engine.value}{why}; "
                f"allowed: engine={'|'.join(plugin.engines)}",
            )
            plugin.check(chosen, self)
        self._check_placement()
        self._check_local_work_fits()

    def _check_placement(self) -> None:
        """What ``placement=ray`` can compute from the actors' partial sums
        (``fedlab.backends.fast.placement``)."""
        if self.placement.name is not PlacementName.ray:
            return
        _require(
            self.engine is Engine.fast,
            f"placement=ray cannot run on engine={self.engine.value}: it spreads engine=fast's "
            "clients over Ray actors; allowed: engine=fast, or placement=local",
        )
        from fedlab.aggregators import AGGREGATORS

        summable = [name for name, entry in AGGREGATORS.items() if entry.summable]
        _require(
            AGGREGATORS.get(self.aggregator.name).summable,
            f"aggregator={self.aggregator.name} cannot run with placement=ray: it needs every "
            "client's update, and each actor returns one partial sum; allowed with "
            f"placement=ray: aggregator={'|'.join(summable)}, or placement=local",
        )
        _require(
            self.hardware.device is Device.cpu,
            f"placement=ray trains on the actors' CPUs, not with hardware={self.hardware.device}; "
            "allowed: hardware=cpu, or placement=local",
        )
        m, actors = self.clients_per_round, self.placement.actors
        _require(
            actors <= m,
            f"placement.actors={actors} is more than the {m} clients a round samples (C={self.C}, "
            f"num_clients={self.num_clients}): an actor would be idle; allowed: "
            f"1 <= placement.actors <= {m}",
        )

    def largest_client(self) -> int:
        """The most examples a client holds under this partition (iid and dirichlet: equal
        shares of examples // K; shards: shards_per_client shards)."""
        from fedlab.data import DATASETS

        examples = DATASETS.get(self.dataset.name).train_examples_of(self.dataset)
        part = self.partition
        if part.name is PartitionName.shards:
            size = part.shard_size or examples // (self.num_clients * part.shards_per_client)
            return part.shards_per_client * size
        return examples // self.num_clients

    def _check_local_work_fits(self) -> None:
        """E large enough that a round's visiting order cannot be held fails now, in one line,
        instead of hanging while the first round builds it (E=10^12 once printed nothing)."""
        m, n, epochs = self.clients_per_round, self.largest_client(), self.E
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
        _require(
            False,
            f"E={epochs} is invalid: a round's local training ({m} client{'s' * (m > 1)} x E "
            f"epochs x {n} examples) {why}; allowed here: 1 <= E <= {limit}",
        )

    def _check_model_fits_the_data(self) -> None:
        from fedlab.data import DATASETS
        from fedlab.models import MODELS, fits

        spec = DATASETS.get(self.dataset.name)
        shape, one_class = tuple(spec.input_shape), spec.example_labels

        def takes(model: str) -> bool:
            return fits(model, shape, one_class)

        examples = (
            f"{'x'.join(map(str, shape))} examples of one class"
            if one_class
            else f"sequences of {shape[0]} ids, a class at every position"
        )
        _require(
            takes(self.model.name),
            f"model={self.model.name} does not fit dataset={self.dataset.name} ({examples}); "
            f"allowed with it: model={'|'.join(m for m in MODELS.names() if takes(m))}",
        )

    def _check_clients_fit_the_data(self) -> None:
        from fedlab.data import DATASETS, PARTITIONS

        spec = DATASETS.get(self.dataset.name)
        examples = spec.train_examples_of(self.dataset)
        k = self.num_clients
        part = self.partition
        partition = PARTITIONS.get(part.name.value)
        natural = spec.num_natural_clients(self.dataset)
        with_natural = [n for n, s in DATASETS.items() if s.num_natural_clients(s.Config())]
        with_labels = [n for n, s in DATASETS.items() if s.example_labels]
        if partition.needs_natural_clients:
            _require(
                natural is not None,
                f"partition={part.name.value} needs a dataset with clients of its own; "
                f"dataset={self.dataset.name} has none; allowed: dataset="
                f"{'|'.join(with_natural)}, or a synthetic partition",
            )
            _require(
                k <= natural,
                f"num_clients={k} is invalid with partition=natural; allowed: at most "
                f"{natural} ({self.dataset.name}'s own clients)",
            )
        else:
            _require(
                k <= examples,
                f"num_clients={k} is invalid; allowed: at most {examples} "
                f"(one example each from {self.dataset.name}'s {examples})",
            )
        if partition.needs_labels:
            _require(
                spec.example_labels,
                f"partition={part.name.value} sorts examples by their class, and "
                f"dataset={self.dataset.name}'s examples have no single class (sequence "
                f"targets); allowed there: partition=iid|quantity_skew"
                f"{'|natural' if natural is not None else ''}; label partitions on dataset="
                f"{'|'.join(with_labels)}",
            )
        if part.name is PartitionName.labels_per_client:
            classes = spec.num_classes_of(self.dataset)
            _require(
                part.classes_per_client <= classes,
                f"partition.classes_per_client={part.classes_per_client} is invalid for "
                f"dataset={self.dataset.name}; allowed: 1..{classes} (its classes)",
            )
        if part.name is PartitionName.shards:
            shards = k * part.shards_per_client
            size = part.shard_size or examples // shards
            _require(
                size >= 1 and shards * size <= examples,
                f"num_clients={k} with partition.shards_per_client={part.shards_per_client} and "
                f"partition.shard_size={part.shard_size} needs {shards} shards of {max(size, 1)}; "
                f"allowed: num_clients * shards_per_client * shard_size <= {examples}",
            )
        if self.client_sampling is ClientSampling.cyclic:
            m = self.clients_per_round
            _require(
                k % m == 0,
                f"client_sampling=cyclic needs num_clients ({k}) to be a multiple of the clients "
                f"per round ({m} = max(C*K, 1)); allowed otherwise: client_sampling=uniform",
            )

    @property
    def clients_per_round(self) -> int:
        """m = max(C·K, 1), as in the paper (C=0 means one client per round)."""
        return max(math.floor(self.C * self.num_clients + 1e-9), 1)


def plugin_config(group: str, node: Any, registry: Any, schema: type | None = None) -> Any:
    """``node`` (the composed mapping of ``group``) as the schema its option registers.

    Unknown keys and wrong types become one line naming the key and what is allowed; the
    schema's own ``__post_init__`` checks its ranges. ``schema`` is used for options that
    register no ``Config`` of their own (models register a builder function).
    """
    if is_dataclass(node):
        return node  # built in code
    data = dict(node)
    name = data.get("name")
    try:
        entry = registry.get(name)
    except KeyError:
        raise ConfigError(
            f"{group}.name={name!r} is unknown; allowed: {', '.join(registry.names())}"
        ) from None
    config_cls = getattr(entry, "Config", None) or schema
    for key in sorted(set(data) - {f.name for f in fields(config_cls)}):
        raise ConfigError(unknown_key_message(group, key, data[key], name, registry, schema))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config_cls), data)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        kind = next((f.type for f in fields(config_cls) if f.name == key), "its type")
        raise ConfigError(
            f"{group}.{key}={data.get(key)!r} is invalid; allowed: {_type_words(kind)}"
        ) from None
    return OmegaConf.to_object(merged)


def unknown_key_message(
    group: str, key: str, value: Any, chosen: str, registry: Any, schema: type | None = None
) -> str:
    """``algorithm.mu=0.1 has no effect with algorithm=fedavg; it applies to algorithm=fedprox``."""

    def keys_of(entry: Any) -> set[str]:
        return {f.name for f in fields(getattr(entry, "Config", None) or schema)}

    users = [n for n, e in registry.items() if key in keys_of(e)]
    if users:
        return (
            f"{group}.{key}={value} has no effect with {group}={chosen}; "
            f"it applies to {group}={'|'.join(users)}"
        )
    own = sorted(keys_of(registry.get(chosen)) - {"name"}) if chosen in registry else []
    has = f"the keys {', '.join(own)}" if own else "no keys of its own"
    return f"unknown config key '{group}.{key}': {group}={chosen} has {has}"


def plugin_registry(group: str) -> Any | None:
    """The registry of a plug-in group (``algorithm`` ...), None for any other key."""
    where = PLUGIN_GROUPS.get(group)
    if where is None:
        return None
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def _type_words(kind: Any) -> str:
    text = str(getattr(kind, "__name__", kind))
    return {"float": "a number", "int": "an integer", "bool": "true or false"}.get(text, text)


def register_configs() -> None:
    """Store the root schema; ``conf/config.yaml`` extends it (``defaults: [schema_config]``).

    Each group option merges into a typed node of ``RunConfig`` (``partition: PartitionConfig``),
    so the one root schema checks every key and type of every group.
    """
    ConfigStore.instance().store(name="schema_config", node=RunConfig)
