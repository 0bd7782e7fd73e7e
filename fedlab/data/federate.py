"""From a run's config to the ``FederatedDataset`` it trains on: load, then partition."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedlab.data.base import DATASETS, FederatedDataset
from fedlab.data.partition import PARTITIONS

# The partition's stream of the one ``seed`` (numpy SeedSequence ids; fedlab.core.sampling has
# the others: client sampling 1, local data order 2).
PARTITION_STREAM = 0


def federate(run: Any) -> FederatedDataset:
    """The dataset ``run.dataset`` names, split over ``run.num_clients`` clients by
    ``run.partition``, deterministic in ``run.seed``."""
    spec = DATASETS.get(run.dataset.name)
    arrays = spec.load(run.dataset)
    rng = np.random.default_rng([run.seed, PARTITION_STREAM])
    partition = PARTITIONS.get(str(run.partition.name))
    clients = partition(arrays.y_train, run.partition, run.num_clients, rng)
    return FederatedDataset(
        name=spec.name,
        x_train=arrays.x_train,
        y_train=arrays.y_train,
        x_test=arrays.x_test,
        y_test=arrays.y_test,
        clients=clients,
        input_shape=tuple(spec.input_shape),
        num_classes=int(spec.num_classes),
    )
