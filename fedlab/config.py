"""The typed schema of one federated run, registered in Hydra's ConfigStore.

``conf/config.yaml`` extends ``RunConfig``: the fixed groups (``hardware``, ``placement``,
``tracking``) merge into typed nodes, so a misspelled key or a wrong type fails when Hydra
composes the config, and each dataclass checks its own ranges in ``__post_init__``. The groups
whose options are plug-ins (dataset, partition, model, the optimizers, algorithm, aggregator,
privacy, compression, attack, callbacks) are typed here only as "a mapping": each option has a
schema of its own (``fedlab.plugin``), into which ``fedlab.validation`` converts the mapping,
and the cross-field rules run there too, once. This module reaches into no registry.

Names follow McMahan et al. 2017: ``C`` is the fraction of clients sampled per round, ``B`` the
local batch size (``null`` = the full local dataset, the paper's B=∞), ``E`` the number of local
epochs, ``num_clients`` is K.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from fedlab.errors import ConfigError


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


class LocalOrder(StrEnum):
    """The order in which a client visits its examples, epoch after epoch."""

    shuffled = "shuffled"  # a fresh permutation every epoch, seeded (McMahan et al.)
    stored = "stored"  # the order its partition dealt them, the same every round (the notebook)


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
    another order), so a checkpoint keys on it (``fedlab.checkpoint.SAME_UP_TO_ROUND_OFF``); and
    its keys apply to one option only, which a group checks (``_reject_unused``). What
    "placement" means, and what it supports, is in ``fedlab.backends.fast.placement``.
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
    system_metrics: bool = False  # MLflow's CPU, memory, disk and network metrics every 10 s

    def __post_init__(self) -> None:
        if self.system_metrics:
            import importlib.util

            _require(
                importlib.util.find_spec("psutil") is not None,
                "tracking.system_metrics=true needs psutil (MLflow reads the system with it), "
                "which is not installed; install it, or allowed: tracking.system_metrics=false",
            )
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

    # Plug-in groups: a mapping here, converted to the chosen option's schema by
    # fedlab.validation (fedlab.plugin: each option's ``Config``).
    dataset: Any = MISSING
    partition: Any = MISSING
    model: Any = MISSING
    client_optimizer: Any = MISSING
    server_optimizer: Any = MISSING
    algorithm: Any = MISSING
    aggregator: Any = MISSING
    privacy: Any = MISSING
    compression: Any = MISSING
    attack: Any = MISSING  # malicious clients (fedlab.attacks); none by default
    # What runs after each round: name -> its keys, in order (conf/callbacks/default.yaml).
    callbacks: Any = MISSING
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
    # The fraction of each client's training examples held out as its own test data, never
    # trained on (personalized evaluation, fedlab.callbacks.personalized); 0: none.
    holdout: float = 0.0
    target_accuracy: float = 0.99
    client_sampling: ClientSampling = ClientSampling.uniform
    local_order: LocalOrder = LocalOrder.shuffled  # stored: the seed notebook's non-IID clients
    engine: Engine = Engine.fast  # what computes the rounds: same arithmetic, same metrics
    objective: Objective = Objective.best_accuracy  # what the run returns to a sweeper
    stop_at_target: bool = False  # end the run at the round it reaches target_accuracy
    run_name: str | None = None  # MLflow run name; null: built from the overrides
    checkpoint_every: int = 1  # rounds between checkpoints; 0: none
    resume: bool = True  # continue from this config's checkpoint, if there is one
    checkpoint_dir: str | None = None  # null: ./checkpoints where the command runs

    def __post_init__(self) -> None:
        _require(0.0 <= self.C <= 1.0, f"C={self.C} is invalid; allowed: 0 <= C <= 1")
        _require(
            self.B is None or self.B >= 1,
            f"B={self.B} is invalid; allowed: an integer >= 1, or null for the full local dataset",
        )
        _require(self.E >= 1, f"E={self.E} is invalid; allowed: an integer >= 1")
        _require(self.num_clients >= 1, f"num_clients={self.num_clients} is invalid; allowed: >= 1")
        _require(self.rounds >= 1, f"rounds={self.rounds} is invalid; allowed: an integer >= 1")
        _require(
            0 <= self.seed <= MAX_SEED,
            f"seed={self.seed} is invalid; allowed: an integer >= 0 and <= {MAX_SEED} (2**32 - 1, "
            "what NumPy and TensorFlow seed with)",
        )
        _require(self.eval_every >= 1, f"eval_every={self.eval_every} is invalid; allowed: >= 1")
        _require(
            self.eval_clients is None or self.eval_clients >= 1,
            f"eval_clients={self.eval_clients} is invalid; allowed: null (all) or an integer >= 1",
        )
        _require(
            0.0 <= self.holdout < 1.0,
            f"holdout={self.holdout} is invalid; allowed: 0 <= holdout < 1 (the fraction of each "
            "client's training examples held out as its own test data; 0: none)",
        )
        _require(
            0.0 < self.target_accuracy <= 1.0,
            f"target_accuracy={self.target_accuracy} is invalid; allowed: 0 < target_accuracy <= 1",
        )
        _require(
            self.checkpoint_every >= 0,
            f"checkpoint_every={self.checkpoint_every} is invalid; allowed: 0 (never) or >= 1",
        )

    @property
    def clients_per_round(self) -> int:
        """m = max(C·K, 1), as in the paper (C=0 means one client per round)."""
        return max(math.floor(self.C * self.num_clients + 1e-9), 1)


# The largest seed NumPy's legacy seeding and TensorFlow's set_random_seed take.
MAX_SEED = 2**32 - 1


# The groups whose default is no option at all (conf/config.yaml: ``experiment: null``).
PRESET_GROUPS = ("experiment", "hparams_search")


def hydra_overrides(args: list[str]) -> list[str]:
    """The command line's overrides as Hydra takes them: ``experiment=null`` (no preset, the
    default) becomes ``~experiment``, since Hydra refuses a null group choice with a traceback."""
    nulls = {f"{group}={value}" for group in PRESET_GROUPS for value in ("null", "None", "~")}
    return [f"~{arg.split('=', 1)[0]}" if arg in nulls else arg for arg in args]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def as_tree(cfg: RunConfig) -> dict[str, Any]:
    """The whole converted config as nested plain values (what a run's ``config.yaml`` holds).
    A plug-in's ``_target_`` appears only for one from outside fedlab (fedlab's own have none)."""

    def prune(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        return {k: prune(v) for k, v in node.items() if not (k == "_target_" and v is None)}

    return prune(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True))


def run_params(cfg: RunConfig) -> dict[str, Any]:
    """The config as flat ``group.key`` values: a run's MLflow params, and what its
    checkpoint's key hashes."""
    return flatten(as_tree(cfg))


def register_configs() -> None:
    """Store the root schema; ``conf/config.yaml`` extends it (``defaults: [schema_config]``).

    The fixed groups' options merge into typed nodes of ``RunConfig`` (``tracking:
    TrackingConfig``); the plug-in groups' into mappings, which ``fedlab.validation`` converts.
    """
    ConfigStore.instance().store(name="schema_config", node=RunConfig)
