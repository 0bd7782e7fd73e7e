"""The geometric median of the updates (RFA: Pillutla, Kakade and Harchaoui 2022, "Robust
Aggregation for Federated Learning"), the point minimising the weighted sum of distances,

    v* = argmin_v Σ_k α_k ‖v − Δ_k‖,   α_k = n_k / Σ n (examples),

approximated by the smoothed Weiszfeld algorithm: start at the weighted mean, then repeat

    β_k = α_k / max(ν, ‖v − Δ_k‖),   v ← Σ β_k Δ_k / Σ β_k,

at most ``maxiter`` times, stopping early once the objective changes by less than ``ftol``
times itself. Defaults: maxiter 4, ν 1e-5, ftol 1e-6, checked against the authors' code
(krishnap25/RFA ``geometric_median_update(points, alphas, maxiter=4, eps=1e-5, ftol=1e-6)``,
read in public copies: the same start, weights and stopping rule). Its breakdown point is 1/2:
it assumes an honest majority (f < n/2 in examples), and a round of fewer than 3 clients is
refused when the config is composed. Logs ``aggregator/iterations`` and, under attack,
``aggregator/weight_malicious``: the share of the final Weiszfeld weight on malicious updates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, AggregatorConfig, Defence, flatten, unflatten
from fedlab.errors import ConfigError


@dataclass
class GeometricMedianConfig(AggregatorConfig):
    maxiter: int = 4  # Weiszfeld iterations at most
    nu: float = 1e-5  # ν: the smoothing (no distance counts as less than ν)
    ftol: float = 1e-6  # stop once the objective changes by less than ftol times itself

    def __post_init__(self) -> None:
        if self.maxiter < 1:
            raise ConfigError(f"aggregator.maxiter={self.maxiter} is invalid; allowed: >= 1")
        for key in ("nu", "ftol"):
            value = getattr(self, key)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"aggregator.{key}={value} is invalid; allowed: a number > 0")


def smoothed_weiszfeld(
    points: np.ndarray, alphas: np.ndarray, maxiter: int, nu: float, ftol: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(the approximate geometric median of the rows of ``points``, the last Weiszfeld weights,
    the iterations taken)."""
    alphas = alphas / alphas.sum()
    median = alphas @ points
    weights = alphas

    def objective(v: np.ndarray) -> float:
        return float(alphas @ np.linalg.norm(points - v, axis=1))

    value, taken = objective(median), 0
    for _ in range(maxiter):
        previous = value
        weights = alphas / np.maximum(nu, np.linalg.norm(points - median, axis=1))
        weights = weights / weights.sum()
        median = weights @ points
        value, taken = objective(median), taken + 1
        if abs(previous - value) < ftol * value:
            break
    return median, weights, taken


@AGGREGATORS.register("geometric_median")
class GeometricMedian(Defence):
    Config = GeometricMedianConfig
    label = "geometric median (RFA)"
    missing_on_tff = "TFF 0.87 has no geometric-median aggregator"
    honest_majority = True

    def select(self, state, updates, weights):
        cfg = self.cfg
        points = np.stack([flatten(u) for u in updates])
        alphas = np.asarray(weights, np.float64)
        if alphas.sum() <= 0:
            alphas = np.ones(len(updates))
        median, share, taken = smoothed_weiszfeld(points, alphas, cfg.maxiter, cfg.nu, cfg.ftol)
        return unflatten(median, updates[0]), state, {"iterations": taken}, {"weight": share}
