"""Coordinate-wise trimmed mean (Yin et al. 2018): for each coordinate, drop the ``k`` largest
and ``k`` smallest client values, ``k = floor(beta * m)`` of the ``m`` clients, and average the
rest. Unweighted, as the median. ``beta`` must be below 0.5 (something must be left) and a round
must sample enough clients for ``k >= 1``. TFF 0.87 has no such aggregator: ``engine=fast``
only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, Aggregator, AggregatorConfig


@dataclass
class TrimmedMeanConfig(AggregatorConfig):
    beta: float = 0.1  # the fraction of clients cut from each end, per coordinate

    def __post_init__(self) -> None:
        from fedlab.errors import ConfigError

        if not 0 < self.beta < 0.5:
            raise ConfigError(f"aggregator.beta={self.beta} is invalid; allowed: 0 < beta < 0.5")


@AGGREGATORS.register("trimmed_mean")
class TrimmedMean(Aggregator):
    Config = TrimmedMeanConfig
    label = "trimmed mean"
    honest_majority = True  # it tolerates fewer than beta*m malicious values per coordinate
    missing_on_tff = "TFF 0.87 has no trimmed-mean aggregator"

    @classmethod
    def min_clients(cls, cfg) -> int:
        return math.ceil(1 / cfg.beta - 1e-9)  # floor(beta * m) >= 1

    @classmethod
    def _why(cls, cfg) -> str:
        return f" to cut floor({cfg.beta:g} * m) >= 1 from each end"

    def aggregate(self, updates, weights):
        m = len(updates)
        if not m:
            return None
        k = math.floor(self.cfg.beta * m + 1e-9)
        out = []
        for layer in zip(*updates, strict=True):
            ordered = np.sort(np.stack(layer), axis=0)
            out.append(ordered[k : m - k].mean(axis=0, dtype=np.float64).astype(np.float32))
        return out
