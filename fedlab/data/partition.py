"""Client partitions of a labelled dataset: IID, pathological shards, and Dirichlet label skew.

McMahan et al. (2017), "Communication-Efficient Learning of Deep Networks from Decentralized
Data" (AISTATS, arXiv:1602.05629), Sec. 3, split MNIST over K = 100 clients two ways:

* IID: the data shuffled and divided into 100 clients of 600 examples each (:func:`iid`);
* pathological non-IID: the data sorted by digit label, cut into 200 shards of size 300, and
  each client given 2 shards, so most clients hold only two digits (:func:`shards`).

:func:`quantity_skew` (client sizes from a power law or a log-normal, labels IID; the unbalanced
splits of Li et al. 2020, "Federated Optimization in Heterogeneous Networks", FedProx) and
:func:`labels_per_client` (each client holds exactly k classes; "#C=k" of Li, Diao, Chen & He
2022, "Federated Learning on Non-IID Data Silos: An Experimental Study") are the synthetic skews
researchers ask for beside them; :func:`natural_subset` picks clients of a dataset that has its
own (speaking roles, writers).

:func:`dirichlet` adds the label-skew partition of Hsu, Qi & Brown (2019), "Measuring the
Effects of Non-Identical Data Distribution for Federated Visual Classification"
(arXiv:1909.06335): each client's class proportions are drawn from Dirichlet(alpha); smaller
alpha means more skew.

Every function maps labels (or a count) to a list with one index array per client; clients
hold indices into the dataset, never copies of it. Returned arrays are int64, sorted
ascending, pairwise disjoint, and fully determined by the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np

from fedlab.errors import PartitionError

__all__ = [
    "ASSIGNMENTS",
    "DISTRIBUTIONS",
    "PartitionError",
    "dirichlet",
    "iid",
    "label_histogram",
    "labels_per_client",
    "natural_subset",
    "quantity_skew",
    "shards",
]

#: Accepted values of ``shards(assignment=...)``.
ASSIGNMENTS: tuple[str, ...] = ("random", "fixed")
#: Accepted values of ``quantity_skew(distribution=...)``.
DISTRIBUTIONS: tuple[str, ...] = ("power_law", "lognormal")


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise PartitionError(f"{name}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise PartitionError(f"{name}={value} must be >= {minimum}")
    return int(value)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PartitionError(
            f"labels with shape {labels.shape} dtype {labels.dtype} must be a 1-D integer array"
        )
    if labels.size and labels.min() < 0:
        raise PartitionError(f"labels must be >= 0, got minimum {labels.min()}")
    return labels


def _check_num_clients(num_clients: int, num_examples: int) -> int:
    num_clients = _check_count("num_clients", num_clients)
    if num_clients > num_examples:
        raise PartitionError(
            f"num_clients={num_clients} must be <= the number of examples ({num_examples})"
        )
    return num_clients


def _finish(parts: list[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(p).astype(np.int64, copy=False) for p in parts]


def iid(num_examples: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """IID split: shuffle ``range(num_examples)`` and give each client an equal share.

    Each client gets ``num_examples // num_clients`` indices; the remainder (after shuffling)
    is dropped, as in the paper (60,000 / 100 = 600 each).

    Raises:
        PartitionError: ``num_clients < 1`` or ``num_clients > num_examples``.
    """
    return _finish(_deal_iid(num_examples, num_clients, rng))


def _deal_iid(num_examples: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``iid``'s clients in the order they were dealt (the shuffled order)."""
    num_examples = _check_count("num_examples", num_examples, minimum=0)
    num_clients = _check_num_clients(num_clients, num_examples)
    per_client = num_examples // num_clients
    order = rng.permutation(num_examples)[: per_client * num_clients]
    return list(order.reshape(num_clients, per_client))


def shards(
    labels: np.ndarray,
    num_clients: int,
    shards_per_client: int,
    shard_size: int | None,
    assignment: str,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """The paper's pathological non-IID split into label-sorted shards.

    Examples are stable-sorted by label and the first ``S * shard_size`` of that order are cut
    into ``S = num_clients * shards_per_client`` shards of ``shard_size`` consecutive examples
    (``shard_size=None``: ``len(labels) // S``; leftover examples are dropped). For K = 100,
    2 shards per client and 60,000 examples: 200 shards of 300.

    ``assignment="random"``: shards are permuted with ``rng`` and dealt ``shards_per_client``
    to each client (the paper). ``assignment="fixed"``: client ``i`` gets shards
    ``i, i + K, i + 2K, ...`` (K = ``num_clients``); no randomness, ``rng`` is unused.

    Raises:
        PartitionError: a count < 1, ``num_clients * shards_per_client * shard_size`` greater
            than ``len(labels)``, or an unknown ``assignment``.
    """
    return _finish(
        _deal_shards(labels, num_clients, shards_per_client, shard_size, assignment, rng)
    )


def _deal_shards(
    labels: np.ndarray,
    num_clients: int,
    shards_per_client: int,
    shard_size: int | None,
    assignment: str,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """``shards``' clients in the order they were dealt: shard after shard, each in the
    label-sorted order (what the seed notebook's non-IID clients step through)."""
    labels = _check_labels(labels)
    num_examples = labels.shape[0]
    num_clients = _check_count("num_clients", num_clients)
    shards_per_client = _check_count("shards_per_client", shards_per_client)
    if assignment not in ASSIGNMENTS:
        raise PartitionError(
            f"unknown shard assignment {assignment!r}; allowed: {', '.join(ASSIGNMENTS)}"
        )
    num_shards = num_clients * shards_per_client
    if shard_size is None:
        shard_size = num_examples // num_shards
        if shard_size < 1:
            raise PartitionError(
                f"num_clients*shards_per_client={num_clients}*{shards_per_client}={num_shards} "
                f"shards must be <= the number of examples ({num_examples})"
            )
    else:
        shard_size = _check_count("shard_size", shard_size)
    if num_shards * shard_size > num_examples:
        raise PartitionError(
            f"num_clients*shards_per_client*shard_size={num_clients}*{shards_per_client}"
            f"*{shard_size}={num_shards * shard_size} must be <= the number of examples "
            f"({num_examples})"
        )
    by_label = np.argsort(labels, kind="stable")
    shard_indices = by_label[: num_shards * shard_size].reshape(num_shards, shard_size)
    if assignment == "random":
        client_shards = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    else:
        client_shards = np.arange(num_shards).reshape(shards_per_client, num_clients).T
    return [shard_indices[ids].ravel() for ids in client_shards]


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total``, each within 1 of ``total * w / sum(w)``.

    Uses rounding of the cumulative sum, so zero weights get zero counts.
    """
    cumulative = np.cumsum(weights)
    bounds = np.rint(cumulative / cumulative[-1] * total).astype(np.int64)
    bounds = np.minimum(bounds, total)
    bounds[-1] = total
    return np.diff(bounds, prepend=0)


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    num_classes: int | None = None,
) -> list[np.ndarray]:
    """Dirichlet label-skew split (Hsu et al. 2019) with equal client sizes.

    Every client gets ``m = len(labels) // num_clients`` examples. Clients are filled in
    order ``0..K-1``: client ``k`` draws class proportions ``q_k ~ Dir(alpha * 1_C)`` and takes
    ``round(m * q_k)`` examples per class (rounded so they sum to ``m``), sampled without
    replacement from what is left of each class pool (pools are shuffled once by ``rng``).
    When a class pool runs out, the unmet demand is redistributed over the classes that still
    have examples in proportion to ``q_k`` renormalised over them (or to the remaining pool
    sizes if ``q_k`` is zero there). Indices are disjoint across clients; leftover examples
    are dropped. Smaller ``alpha`` gives more skew; large ``alpha`` approaches IID.

    Args:
        labels: 1-D integer labels in ``[0, num_classes)``.
        num_clients: K, between 1 and ``len(labels)``.
        alpha: Dirichlet concentration, > 0.
        rng: source of all randomness.
        num_classes: C; default ``labels.max() + 1``.

    Raises:
        PartitionError: ``alpha <= 0`` (or not finite), bad ``num_clients``, or labels
            outside ``[0, num_classes)``.
    """
    labels = _check_labels(labels)
    num_examples = labels.shape[0]
    try:
        alpha_value = float(alpha)
    except (TypeError, ValueError):
        raise PartitionError(f"alpha={alpha!r} must be a number > 0") from None
    if not np.isfinite(alpha_value) or alpha_value <= 0:
        raise PartitionError(f"alpha={alpha!r} must be > 0 (and finite)")
    num_clients = _check_num_clients(num_clients, num_examples)
    observed = int(labels.max()) + 1 if num_examples else 1
    if num_classes is None:
        num_classes = observed
    num_classes = _check_count("num_classes", num_classes)
    if observed > num_classes:
        raise PartitionError(
            f"num_classes={num_classes} must exceed the largest label ({observed - 1})"
        )

    per_client = num_examples // num_clients
    by_label = np.argsort(labels, kind="stable")
    class_sizes = np.bincount(labels, minlength=num_classes)
    class_starts = np.concatenate([[0], np.cumsum(class_sizes)[:-1]])
    pools = [
        rng.permutation(by_label[s : s + n]) for s, n in zip(class_starts, class_sizes, strict=True)
    ]
    remaining = class_sizes.astype(np.int64)
    taken = np.zeros(num_classes, dtype=np.int64)  # per class, how much of its pool is used
    concentration = np.full(num_classes, alpha_value)

    parts: list[np.ndarray] = []
    for _ in range(num_clients):
        q = rng.dirichlet(concentration)
        counts = np.zeros(num_classes, dtype=np.int64)
        need = per_client
        while need > 0:
            weights = np.where(remaining > 0, q, 0.0)
            if not weights.sum() > 0:
                weights = remaining.astype(np.float64)
            take = np.minimum(_apportion(need, weights), remaining)
            counts += take
            remaining -= take
            need -= int(take.sum())
        chosen = [pools[c][taken[c] : taken[c] + counts[c]] for c in np.flatnonzero(counts)]
        taken += counts
        parts.append(np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64))
    return _finish(parts)


def label_histogram(
    labels: np.ndarray, parts: list[np.ndarray], num_classes: int | None = None
) -> np.ndarray:
    """Per-client label counts: an int64 array of shape ``(len(parts), num_classes)``.

    ``num_classes`` defaults to ``labels.max() + 1``.
    """
    labels = _check_labels(labels)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 1
    num_classes = _check_count("num_classes", num_classes)
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    if not len(parts):
        return np.zeros((0, num_classes), dtype=np.int64)
    client = np.repeat(np.arange(len(parts)), sizes)
    flat = labels[np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])]
    if flat.size and flat.max() >= num_classes:
        raise PartitionError(
            f"num_classes={num_classes} must exceed the largest label ({flat.max()})"
        )
    counts = np.bincount(client * num_classes + flat, minlength=len(parts) * num_classes)
    return counts.reshape(len(parts), num_classes).astype(np.int64)


def quantity_skew(
    num_examples: int,
    num_clients: int,
    distribution: str,
    exponent: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Unequal client sizes, labels IID: the shuffled examples cut into ``num_clients`` runs.

    Sizes are ``1 + round((N - K) * w_i / sum(w))`` (apportioned so they sum to N exactly; every
    client holds at least one example), with weights ``w_i`` drawn from
    ``distribution="power_law"``: a Pareto (Lomax) law, ``1 + rng.pareto(exponent)``, whose tail
    falls as ``w^-(exponent+1)`` (smaller exponent, heavier tail), or ``"lognormal"``:
    ``rng.lognormal(0, exponent)`` (exponent is the log-scale sigma; larger, more skew). All
    ``N`` examples are used.

    Raises:
        PartitionError: an unknown distribution, ``exponent <= 0``, or a bad ``num_clients``.
    """
    num_examples = _check_count("num_examples", num_examples, minimum=0)
    num_clients = _check_num_clients(num_clients, num_examples)
    if distribution not in DISTRIBUTIONS:
        raise PartitionError(
            f"unknown size distribution {distribution!r}; allowed: {', '.join(DISTRIBUTIONS)}"
        )
    if not (np.isfinite(exponent) and exponent > 0):
        raise PartitionError(f"exponent={exponent!r} must be > 0 (and finite)")
    if distribution == "power_law":
        weights = 1.0 + rng.pareto(exponent, num_clients)
    else:
        weights = rng.lognormal(0.0, exponent, num_clients)
    sizes = 1 + _apportion(num_examples - num_clients, weights)
    order = rng.permutation(num_examples)
    return _finish(np.split(order, np.cumsum(sizes)[:-1]))


def labels_per_client(
    labels: np.ndarray,
    num_clients: int,
    classes_per_client: int,
    rng: np.random.Generator,
    num_classes: int | None = None,
) -> list[np.ndarray]:
    """Each client holds exactly ``classes_per_client`` classes ("#C=k", Li et al. 2022).

    Client ``i`` holds class ``i mod C`` (so every class is held when ``K >= C``) and
    ``k - 1`` more drawn without replacement from the rest; each class's examples are shuffled
    and split as evenly as possible between the clients holding it. A class held by nobody is
    left out.

    Raises:
        PartitionError: ``k`` outside ``1..C``, or a class with fewer examples than clients
            holding it (one of them would not hold it after all).
    """
    labels = _check_labels(labels)
    num_clients = _check_num_clients(num_clients, labels.shape[0])
    observed = int(labels.max()) + 1 if labels.size else 1
    num_classes = _check_count("num_classes", num_classes if num_classes else observed)
    k = _check_count("classes_per_client", classes_per_client)
    if k > num_classes:
        raise PartitionError(
            f"classes_per_client={k} must be <= the number of classes ({num_classes})"
        )
    held = []
    for i in range(num_clients):
        first = i % num_classes
        others = np.delete(np.arange(num_classes), first)
        held.append(np.concatenate([[first], rng.choice(others, k - 1, replace=False)]))
    holders: list[list[int]] = [[] for _ in range(num_classes)]
    for client, classes in enumerate(held):
        for c in classes:
            holders[int(c)].append(client)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c, who in enumerate(holders):
        if not who:
            continue
        pool = rng.permutation(np.flatnonzero(labels == c))
        if pool.size < len(who):
            raise PartitionError(
                f"class {c} has {pool.size} examples for {len(who)} clients holding it; "
                "allowed: fewer clients or fewer classes_per_client"
            )
        for client, piece in zip(who, np.array_split(pool, len(who)), strict=True):
            parts[client].append(piece)
    return _finish([np.concatenate(p) for p in parts])


def natural_subset(num_natural: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
    """``num_clients`` of a dataset's ``num_natural`` own clients, seeded, in their order (all of
    them when equal, without drawing)."""
    num_clients = _check_count("num_clients", num_clients)
    if num_clients > num_natural:
        raise PartitionError(
            f"num_clients={num_clients} must be <= the dataset's {num_natural} clients"
        )
    if num_clients == num_natural:
        return np.arange(num_natural, dtype=np.int64)
    return np.sort(rng.choice(num_natural, num_clients, replace=False)).astype(np.int64)


# -- the ``partition`` config group: one plug-in per option, each with its own keys -------------

from dataclasses import dataclass  # noqa: E402
from enum import StrEnum  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

from fedlab.errors import ConfigError  # noqa: E402
from fedlab.plugin import Plugin, PluginConfig, Registry  # noqa: E402


@dataclass(frozen=True)
class PartitionInput:
    """What a partition may read: the training labels (one per example, or None when the targets
    are sequences), the number of classes, and the dataset's own clients (None if it has none)."""

    labels: np.ndarray | None
    num_examples: int
    num_classes: int
    natural_clients: list[np.ndarray] | None


@dataclass(frozen=True)
class Assignment:
    """Each client's training indices (sorted); ``natural_ids``: which of the dataset's own
    clients they are (their test splits are the ones evaluated), None for a synthetic partition;
    ``dealt``: each client's indices in the order the partition dealt them (None: the dataset's
    order), which ``local_order=stored`` visits."""

    clients: list[np.ndarray]
    natural_ids: np.ndarray | None = None
    dealt: list[np.ndarray] | None = None


@dataclass
class PartitionConfig(PluginConfig):
    """The keys every partition has; one with keys of its own extends it."""


class Partition(Plugin):
    """One option of the ``partition`` group. ``needs_labels``: it sorts by class labels;
    ``needs_natural_clients``: it takes the dataset's own clients (``fedlab.validation`` checks
    both before anything loads)."""

    Config: ClassVar[type] = PartitionConfig
    needs_labels: ClassVar[bool] = False
    needs_natural_clients: ClassVar[bool] = False

    @classmethod
    def split(
        cls, data: PartitionInput, cfg: Any, num_clients: int, rng: np.random.Generator
    ) -> Assignment:
        """Each of ``num_clients`` clients' training indices, from ``rng`` alone."""
        raise NotImplementedError

    @classmethod
    def largest_client(cls, cfg: Any, examples: int, num_clients: int) -> int:
        """The most examples a client can hold, known without loading (iid and dirichlet: equal
        shares; what bounds a round's local work in memory)."""
        return examples // num_clients


#: ``name -> Partition``; the options are all in this module.
PARTITIONS: Registry[type[Partition]] = Registry("partition", None, Partition)


def _positive_count(key: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"partition.{key}={value} is invalid; allowed: an integer >= 1")


@PARTITIONS.register("iid")
class Iid(Partition):
    """The data shuffled and dealt out in equal shares (McMahan et al. 2017)."""

    @classmethod
    def split(cls, data, cfg, num_clients, rng):
        dealt = _deal_iid(data.num_examples, num_clients, rng)
        return Assignment(_finish(dealt), dealt=dealt)


class ShardAssignment(StrEnum):
    random = "random"
    fixed = "fixed"


@dataclass
class ShardsConfig(PartitionConfig):
    shards_per_client: int = 2
    shard_size: int | None = None  # null: examples // (num_clients * shards_per_client)
    assignment: ShardAssignment = ShardAssignment.random

    def __post_init__(self) -> None:
        _positive_count("shards_per_client", self.shards_per_client)
        if self.shard_size is not None and self.shard_size < 1:
            raise ConfigError(
                f"partition.shard_size={self.shard_size} is invalid; allowed: null or an "
                "integer >= 1"
            )


@PARTITIONS.register("shards")
class Shards(Partition):
    """McMahan et al.'s pathological non-IID split: sort by label, cut into shards, deal out."""

    Config = ShardsConfig
    needs_labels = True

    @classmethod
    def split(cls, data, cfg, num_clients, rng):
        dealt = _deal_shards(
            data.labels,
            num_clients,
            cfg.shards_per_client,
            cfg.shard_size,
            str(cfg.assignment),
            rng,
        )
        return Assignment(_finish(dealt), dealt=dealt)

    @classmethod
    def _size(cls, cfg, examples: int, num_clients: int) -> int:
        return cfg.shard_size or examples // (num_clients * cfg.shards_per_client)

    @classmethod
    def largest_client(cls, cfg, examples, num_clients):
        return cfg.shards_per_client * cls._size(cfg, examples, num_clients)

    @classmethod
    def check(cls, cfg, run) -> None:
        from fedlab.data.base import DATASETS

        examples = DATASETS.of(run.dataset).train_examples_of(run.dataset)
        k = run.num_clients
        shards_needed = k * cfg.shards_per_client
        size = cls._size(cfg, examples, k)
        if size < 1 or shards_needed * size > examples:
            raise ConfigError(
                f"num_clients={k} with partition.shards_per_client={cfg.shards_per_client} and "
                f"partition.shard_size={cfg.shard_size} needs {shards_needed} shards of "
                f"{max(size, 1)}; allowed: num_clients * shards_per_client * shard_size <= "
                f"{examples}"
            )


@dataclass
class DirichletConfig(PartitionConfig):
    alpha: float = 0.5  # label proportions per client ~ Dirichlet(alpha)

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ConfigError(
                f"partition.alpha={self.alpha} is invalid; allowed: a finite number > 0"
            )


@PARTITIONS.register("dirichlet")
class Dirichlet(Partition):
    """Label proportions per client drawn from Dirichlet(alpha) (Hsu et al. 2019)."""

    Config = DirichletConfig
    needs_labels = True

    @classmethod
    def split(cls, data, cfg, num_clients, rng):
        return Assignment(dirichlet(data.labels, num_clients, cfg.alpha, rng))


class SizeDistribution(StrEnum):
    power_law = "power_law"
    lognormal = "lognormal"


@dataclass
class QuantitySkewConfig(PartitionConfig):
    # Client sizes from a power law (Pareto exponent) or a log-normal (sigma).
    distribution: SizeDistribution = SizeDistribution.power_law
    exponent: float = 1.5

    def __post_init__(self) -> None:
        if not (self.exponent > 0 and math.isfinite(self.exponent)):
            raise ConfigError(
                f"partition.exponent={self.exponent} is invalid; allowed: a finite number > 0"
            )


@PARTITIONS.register("quantity_skew")
class QuantitySkew(Partition):
    """Client sizes from a power law or a log-normal, labels IID (Li et al. 2020)."""

    Config = QuantitySkewConfig

    @classmethod
    def split(cls, data, cfg, num_clients, rng):
        return Assignment(
            quantity_skew(data.num_examples, num_clients, str(cfg.distribution), cfg.exponent, rng)
        )


@dataclass
class LabelsPerClientConfig(PartitionConfig):
    classes_per_client: int = 2  # each client holds exactly this many classes

    def __post_init__(self) -> None:
        _positive_count("classes_per_client", self.classes_per_client)


@PARTITIONS.register("labels_per_client")
class LabelsPerClient(Partition):
    """Each client holds exactly k classes ("#C=k", Li et al. 2022)."""

    Config = LabelsPerClientConfig
    needs_labels = True

    @classmethod
    def split(cls, data, cfg, num_clients, rng):
        return Assignment(
            labels_per_client(
                data.labels, num_clients, cfg.classes_per_client, rng, data.num_classes
            )  # fmt: skip
        )

    @classmethod
    def check(cls, cfg, run) -> None:
        from fedlab.data.base import DATASETS

        classes = DATASETS.of(run.dataset).num_classes_of(run.dataset)
        if cfg.classes_per_client > classes:
            raise ConfigError(
                f"partition.classes_per_client={cfg.classes_per_client} is invalid for "
                f"dataset={run.dataset.name}; allowed: 1..{classes} (its classes)"
            )


@PARTITIONS.register("natural")
class Natural(Partition):
    """The dataset's own clients (speaking roles, writers), a seeded subset of them."""

    needs_natural_clients = True

    @classmethod
    def split(cls, data, cfg, num_clients, rng):
        chosen = natural_subset(len(data.natural_clients), num_clients, rng)
        return Assignment([data.natural_clients[i] for i in chosen], chosen)
