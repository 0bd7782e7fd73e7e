"""From a run's config to the ``FederatedDataset`` it trains on: load, then partition."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedlab import streams
from fedlab.data.base import DATASETS, FederatedDataset
from fedlab.data.partition import PARTITIONS, PartitionInput


def federate(run: Any) -> FederatedDataset:
    """The dataset ``run.dataset`` names, split over ``run.num_clients`` clients by
    ``run.partition``, deterministic in ``run.seed``.

    A dataset with clients of its own (``train_clients`` / ``test_clients``) keeps the test split
    of each: those of the chosen clients under ``partition=natural``, all of them under a
    synthetic partition (its training clients are not the dataset's) or when the dataset's test
    clients are not its training clients (``separate_test_clients``).
    """
    spec = DATASETS.of(run.dataset)
    arrays = spec.load(run.dataset)
    rng = streams.partition(run.seed)
    partition = PARTITIONS.of(run.partition)
    natural_train = getattr(arrays, "train_clients", None)
    natural_test = getattr(arrays, "test_clients", None)
    data = PartitionInput(
        labels=arrays.y_train if spec.example_labels else None,
        num_examples=len(arrays.y_train),
        num_classes=int(spec.num_classes_of(run.dataset)),
        natural_clients=natural_train,
    )
    assignment = partition.split(data, run.partition, run.num_clients, rng)
    test_clients = None
    if natural_test is not None:
        ids = assignment.natural_ids
        # Test clients that are other clients than the training ones (TFF's CIFAR-100) are all
        # evaluated, whichever training clients were chosen.
        if ids is None or getattr(arrays, "separate_test_clients", False):
            test_clients = list(natural_test)
        else:
            test_clients = [natural_test[i] for i in ids]
    return FederatedDataset(
        name=spec.name,
        x_train=arrays.x_train,
        y_train=arrays.y_train,
        x_test=arrays.x_test,
        y_test=arrays.y_test,
        clients=assignment.clients,
        input_shape=tuple(spec.input_shape),
        num_classes=int(spec.num_classes_of(run.dataset)),
        test_clients=test_clients,
        pad_label=spec.pad_label,
        dealt_positions=(
            None
            if assignment.dealt is None
            else [
                np.searchsorted(mine, dealt)
                for mine, dealt in zip(assignment.clients, assignment.dealt, strict=True)
            ]
        ),
        source=str(getattr(arrays, "source", "")),
    )
