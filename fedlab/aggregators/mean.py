"""FedAvg's aggregation: the mean of the updates weighted by the clients' examples,
``sum_k n_k * u_k / sum_k n_k`` (McMahan et al. 2017), computed as TFF's ``MeanFactory`` does:
each update multiplied by its weight, summed in client order, divided by the summed weights.

In slices (``placement=ray``) each slice sums its clients in the same way, and the server adds
the slices' sums, then divides: the same terms, added in another order."""

from __future__ import annotations

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("mean")
class Mean(Aggregator):
    engines = ("fast", "tff")
    tff_factory = "MeanFactory"
    summable = True

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

    def accumulate(self, state, partial, update, weight):
        # The same operations as ``aggregate``, so that one slice of the whole cohort is it.
        w = np.float32(weight)
        weighted = [u * w for u in update]
        if partial is None:
            return weighted, w
        sums, total = partial
        return [a + b for a, b in zip(sums, weighted, strict=True)], np.float32(total + w)

    def combine(self, state, partials):
        if not partials:
            return None, state, {}
        sums, total = partials[0]
        for more, weight in partials[1:]:
            sums = [a + b for a, b in zip(sums, more, strict=True)]
            total = np.float32(total + weight)
        with np.errstate(divide="ignore", invalid="ignore"):
            return [s / total for s in sums], state, {}
