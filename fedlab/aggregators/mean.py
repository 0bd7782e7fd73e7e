"""FedAvg's aggregation: the mean of the updates weighted by the clients' examples,
``sum_k n_k * u_k / sum_k n_k`` (McMahan et al. 2017), computed as TFF's ``MeanFactory`` does:
each update multiplied by its weight, summed in client order, divided by the summed weights."""

from __future__ import annotations

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("mean")
class Mean(Aggregator):
    name = "mean"
    engines = ("fast", "tff")
    tff_factory = "MeanFactory"

    def aggregate(self, updates, weights):
        total = np.float32(0.0)
        sums: list[np.ndarray] | None = None
        for update, weight in zip(updates, weights, strict=True):
            w = np.float32(weight)
            weighted = [u * w for u in update]
            sums = (
                weighted if sums is None else [a + b for a, b in zip(sums, weighted, strict=True)]
            )
            total = np.float32(total + w)
        if sums is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return [s / total for s in sums]
