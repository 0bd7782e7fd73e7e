"""A federated dataset: client ids, each client's examples, the example shape and the classes.

Every dataset registers a ``DatasetSpec`` (``DATASETS``, the ``dataset`` config group) that says
what the config cross-checks need without loading anything (training examples, example shape,
classes) and loads its arrays from a local source. ``FederatedDataset`` is what the round loop,
the models and the engines see: they read shapes and classes from it, never from a dataset's
module. Clients are index arrays into one training array, never copies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedlab.plugin import Plugin, PluginConfig, Registry


@dataclass
class DatasetConfig(PluginConfig):
    """The keys every dataset has; one with keys of its own (a source, a path) extends it."""


class DatasetSpec(Plugin):
    """One dataset: what is known before loading it, and how to load it."""

    Config: ClassVar[type] = DatasetConfig
    train_examples: ClassVar[int]
    input_shape: ClassVar[tuple[int, ...]]
    num_classes: ClassVar[int]
    # The label of a target that is not there (a sequence's padding): it counts in neither the
    # loss nor the accuracy. None: every target is real (one class per example, as MNIST).
    pad_label: ClassVar[int | None] = None
    # Whether each example has one class label, which label partitions (shards, ...) sort by.
    example_labels: ClassVar[bool] = True
    # Whether its test clients are other clients than its training ones (TFF's CIFAR-100): then
    # no training client has test data of its own, even under partition=natural.
    separate_test_clients: ClassVar[bool] = False

    @classmethod
    def num_natural_clients(cls, cfg: Any) -> int | None:
        """How many clients the data has of its own (writers, speaking roles), known without
        loading it; None: a centralised dataset, which only a synthetic partition splits."""
        return None

    @classmethod
    def num_classes_of(cls, cfg: Any) -> int:
        """The classes under ``cfg`` (EMNIST's digits-only variant has 10 of its 62)."""
        return cls.num_classes

    @classmethod
    def train_examples_of(cls, cfg: Any) -> int:
        """The training examples under ``cfg``, known without loading."""
        return cls.train_examples

    @classmethod
    def load(cls, cfg: Any) -> Any:
        """The arrays, as an object with ``x_train`` (n, prod(input_shape)) float32 (or a
        ``fedlab.data.coded.CodedExamples`` standing for it, decoded per client), ``y_train``
        int32, ``x_test``, ``y_test`` (and, for a dataset with clients of its own,
        ``train_clients`` / ``test_clients``: each natural client's indices into them); raises a
        ``DataSourceError``-like error in one line."""
        raise NotImplementedError


DATASETS: Registry[type[DatasetSpec]] = Registry("dataset", "fedlab.data", DatasetSpec)


@dataclass(frozen=True)
class FederatedDataset:
    """The training examples split over clients, and the test set.

    ``test_clients`` (natural datasets only): each evaluated client's test examples, as indices
    into ``x_test`` / ``y_test``, for federated evaluation; None: a centralised test set.
    ``own_test_clients``: whether ``test_clients[i]`` is training client ``i``'s own test split
    (partition=natural, on a dataset whose test clients are its training clients).
    ``holdout_clients`` (``holdout > 0``): each client's held-out examples, indices into
    ``x_train`` / ``y_train`` that ``clients`` leaves out: its own test data, never trained on.
    ``pad_label``: see ``DatasetSpec.pad_label``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    clients: list[np.ndarray]  # each client's example indices into x_train / y_train
    input_shape: tuple[int, ...]
    num_classes: int
    test_clients: list[np.ndarray] | None = None
    pad_label: int | None = None
    # Each client's examples in the order its partition dealt them, as positions in its own
    # examples (``local_order=stored``); None: the dataset's order.
    dealt_positions: list[np.ndarray] | None = None
    own_test_clients: bool = False
    holdout_clients: list[np.ndarray] | None = None
    source: str = ""  # where the examples were loaded from, in words (the loader's ``source``)

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def stored_order(self, client_id: int) -> np.ndarray:
        """Positions into the client's examples (``client_data``) in the order its partition
        dealt them (shard after shard; the IID shuffle), else in the dataset's order."""
        if self.dealt_positions is None:
            return np.arange(len(self.clients[client_id]))
        return self.dealt_positions[client_id]

    def client_data(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.clients[client_id]
        return self.x_train[idx], self.y_train[idx]

    def digest(self) -> str:
        """A hash of the training examples and of each client's share of them: what was loaded
        and how it was partitioned (the run's dataset input in MLflow; what a Ray actor must
        hold exactly as the server does, ``fedlab.backends.fast.placement``)."""
        return _digest(self.x_train, self.y_train, *self.clients)

    def test_digest(self) -> str:
        """A hash of the test examples (and of each test client's share, where there are)."""
        return _digest(self.x_test, self.y_test, *(self.test_clients or ()))


def _digest(*arrays: Any) -> str:
    """SHA-256 (16 hex digits) of each array's dtype, shape and bytes. Examples kept as codes
    (``fedlab.data.coded.CodedExamples``) are hashed as their codes and table, not decoded."""
    digest = hashlib.sha256()
    for array in arrays:
        parts = (array.codes, array.table) if hasattr(array, "codes") else (array,)
        for part in parts:
            part = np.ascontiguousarray(part)
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(memoryview(part).cast("B"))
    return digest.hexdigest()[:16]
