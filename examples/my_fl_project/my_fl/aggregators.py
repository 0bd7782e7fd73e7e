"""The unweighted mean of the clients' updates: every client counts the same, whatever its
number of examples (FedAvg weights them by examples)."""

from __future__ import annotations

import numpy as np

from fedlab.aggregators import Aggregator


class UniformMean(Aggregator):
    def aggregate(self, updates, weights):
        count = np.float32(len(updates))
        return [sum(parts) / count for parts in zip(*updates, strict=True)]
