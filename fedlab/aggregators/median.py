"""Coordinate-wise median of the client updates (Yin et al. 2018, "Byzantine-Robust Distributed
Learning: Towards Optimal Statistical Rates"): each coordinate of the result is the median of
that coordinate over the clients. Unweighted: every client counts once, whatever its number of
examples, so that no client can buy influence by claiming many. A minority of arbitrary updates
cannot move it far; the mean follows any single one. TFF 0.87 has no such aggregator:
``engine=fast`` only."""

from __future__ import annotations

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("median")
class Median(Aggregator):
    label = "coordinate-wise median"
    honest_majority = True  # breakdown point 1/2
    missing_on_tff = "TFF 0.87 has no median aggregator"

    @classmethod
    def min_clients(cls, cfg) -> int:
        return 3  # of two updates the median is their mean

    @classmethod
    def _why(cls, cfg) -> str:
        return " (the median of two is their mean)"

    def aggregate(self, updates, weights):
        if not updates:
            return None
        return [
            np.median(np.stack(layer), axis=0).astype(np.float32)
            for layer in zip(*updates, strict=True)
        ]
