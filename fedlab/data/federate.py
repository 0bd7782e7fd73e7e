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
    clients are not its training clients (``separate_test_clients``). With ``run.holdout > 0``
    each client's examples are split into those it trains on and those held out as its own test
    data (``hold_out``).
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
    test_clients, own = None, False
    if natural_test is not None:
        ids = assignment.natural_ids
        # Test clients that are other clients than the training ones (TFF's CIFAR-100) are all
        # evaluated, whichever training clients were chosen.
        if ids is None or getattr(arrays, "separate_test_clients", False):
            test_clients = list(natural_test)
        else:
            test_clients, own = [natural_test[i] for i in ids], True
    clients, held_out, dealt = assignment.clients, None, assignment.dealt
    fraction = float(getattr(run, "holdout", 0.0))
    if fraction > 0:
        clients, held_out = hold_out(clients, fraction, run.seed)
        if dealt is not None:  # the order it was dealt in, less what it holds out
            dealt = [d[np.isin(d, mine)] for d, mine in zip(dealt, clients, strict=True)]
    return FederatedDataset(
        name=spec.name,
        x_train=arrays.x_train,
        y_train=arrays.y_train,
        x_test=arrays.x_test,
        y_test=arrays.y_test,
        clients=clients,
        input_shape=tuple(spec.input_shape),
        num_classes=int(spec.num_classes_of(run.dataset)),
        test_clients=test_clients,
        pad_label=spec.pad_label,
        dealt_positions=(
            None
            if dealt is None
            else [np.searchsorted(mine, d) for mine, d in zip(clients, dealt, strict=True)]
        ),
        own_test_clients=own,
        holdout_clients=held_out,
        source=str(getattr(arrays, "source", "")),
    )


def hold_out(
    clients: list[np.ndarray], fraction: float, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each client's examples split into the ones it trains on and the ones held out as its own
    test data: ``max(floor(fraction * n), 1)`` of its ``n`` drawn at random (``streams.holdout``,
    per client), and at least one left to train on (a client of one example holds none out).
    Both keep the partition's order of the examples."""
    kept, held = [], []
    for client_id, idx in enumerate(clients):
        n = len(idx)
        count = min(max(int(fraction * n), 1), n - 1) if n > 1 else 0
        chosen = np.zeros(n, bool)
        chosen[streams.holdout(seed, client_id).permutation(n)[:count]] = True
        kept.append(idx[~chosen])
        held.append(idx[chosen])
    return kept, held
