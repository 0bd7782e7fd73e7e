"""Norm bounding (Sun, Kairouz, Suresh and McMahan 2019, "Can You Really Backdoor Federated
Learning?"): every update is clipped to L2 norm at most M before FedAvg's example-weighted mean,

    Δ̄ = Σ_k n_k Δ_k · min(1, M / ‖Δ_k‖) / Σ_k n_k,

so that no client, however boosted its update (model replacement), moves the mean by more than
its share times M. It assumes no honest majority (each client's influence is bounded, not
voted out): it limits what boosting buys, not what many small malicious updates do. ``max_norm``
(M) must suit the scale of the honest updates (the paper tunes it per task); the default 2.0 is
fedlab's own, above the honest updates' norms of the MNIST 2NN with client SGD at lr 0.05
(docs/robustness.md has the measured norms). Weak DP noise, the paper's second defence, is
``privacy=dp_fedavg``. A sum over the clients, so it also runs with ``placement=ray`` (each
actor clips its clients). Logs ``aggregator/clipped`` and, under attack,
``aggregator/clipped_malicious``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, AggregatorConfig, Defence
from fedlab.errors import ConfigError


@dataclass
class NormBoundingConfig(AggregatorConfig):
    max_norm: float = 2.0  # M: the largest L2 norm of an update, all its arrays together

    def __post_init__(self) -> None:
        if not (self.max_norm > 0 and math.isfinite(self.max_norm)):
            raise ConfigError(
                f"aggregator.max_norm={self.max_norm} is invalid; allowed: a number > 0"
            )


def _norm(update: list[np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in update))


@AGGREGATORS.register("norm_bounding")
class NormBounding(Defence):
    Config = NormBoundingConfig
    label = "norm bounding"
    missing_on_tff = "TFF 0.87's clipping factory is not wired to this option"
    summable = True

    def accumulate(self, state, partial, update, weight):
        # (the clipped, weighted sum, the summed weights, which clients were clipped, in order)
        norm = _norm(update)
        clipped = norm > self.cfg.max_norm
        scale = np.float32(self.cfg.max_norm / norm if clipped else 1.0) * np.float32(weight)
        weighted = [u * scale for u in update]
        if partial is None:
            return weighted, np.float32(weight), [clipped]
        sums, total, flags = partial
        return (
            [a + b for a, b in zip(sums, weighted, strict=True)],
            np.float32(total + np.float32(weight)),
            [*flags, clipped],
        )

    def combine(self, state, partials):
        return self.combine_marked(state, partials, None)

    def combine_marked(self, state, partials, malicious):
        if not partials:
            return None, state, {}
        sums, total, flags = partials[0]
        for more, weight, clipped in partials[1:]:
            sums = [a + b for a, b in zip(sums, more, strict=True)]
            total, flags = np.float32(total + weight), [*flags, *clipped]
        metrics = {"clipped": float(sum(flags))}
        if malicious is not None:
            bad = zip(flags, malicious, strict=True)
            metrics["clipped_malicious"] = float(sum(c and m for c, m in bad))
        with np.errstate(divide="ignore", invalid="ignore"):
            return [s / total for s in sums], state, metrics

    def next_marked(self, state, updates, weights, malicious):
        # As the slices compute it, one slice: the same operations in the same order.
        if not updates:
            return None, state, {}
        partial = None
        for update, weight in zip(updates, weights, strict=True):
            partial = self.accumulate(state, partial, update, weight)
        return self.combine_marked(state, [partial], malicious)
