"""Centered clipping (Karimireddy, He and Jaggi 2021, "Learning from History for Byzantine
Robust Optimization"): starting from the previous round's aggregate v (the server's memory: zero
at first), clip every update's distance from v to τ and move v by their mean,

    v ← v + (1/n) Σ_i (Δ_i − v) · min(1, τ / ‖Δ_i − v‖),

``iterations`` (L) times; v is the round's aggregate and is kept for the next round in the
aggregator's state (checkpointed with the model). Unweighted. A malicious update moves v by at
most τ/n, whatever it is. The update rule is checked against the authors' code
(epfml/byzantine-robust-optimizer's ``Clipping(tau, n_iter=1)``: the same step, the center zero
at start, one iteration by default, which fedlab keeps: L = 1). τ has to suit the scale of what
is aggregated: the authors' runs vary it from 0.1 to 1000 (their output folders), and public
reimplementations default to 10 for gradients. fedlab aggregates model updates, whose norms for
the MNIST 2NN with client SGD are about 0.6 to 2 (docs/robustness.md): its default τ = 1 is
fedlab's own choice for them, not the paper's. Its guarantee is for a small malicious fraction
(an honest majority at least), and a round of fewer than 3 clients is refused when the config is
composed.
Logs ``aggregator/clipped`` (in the last iteration) and, under attack,
``aggregator/clipped_malicious``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, AggregatorConfig, Defence, flatten, unflatten
from fedlab.errors import ConfigError


@dataclass
class CenteredClippingConfig(AggregatorConfig):
    tau: float = 1.0  # τ: the largest distance from the center an update counts with
    iterations: int = 1  # L: clipping iterations a round

    def __post_init__(self) -> None:
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ConfigError(f"aggregator.tau={self.tau} is invalid; allowed: a number > 0")
        if self.iterations < 1:
            raise ConfigError(
                f"aggregator.iterations={self.iterations} is invalid; allowed: an integer >= 1"
            )


def centered_clip(
    points: np.ndarray, center: np.ndarray, tau: float, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """(the new center, which rows were clipped in the last iteration)."""
    clipped = np.zeros(len(points), bool)
    for _ in range(iterations):
        diff = points - center
        norms = np.linalg.norm(diff, axis=1)
        with np.errstate(divide="ignore"):
            scale = np.minimum(1.0, tau / norms)
        clipped = norms > tau
        center = center + (diff * scale[:, None]).mean(axis=0)
    return center, clipped


@AGGREGATORS.register("centered_clipping")
class CenteredClipping(Defence):
    Config = CenteredClippingConfig
    label = "centered clipping"
    missing_on_tff = "TFF 0.87 has no centered-clipping aggregator"
    honest_majority = True

    def bind_shapes(self, shapes) -> None:
        self.shapes = [tuple(s) for s in shapes]

    def initial_state(self):
        return {"center": [np.zeros(s, np.float32) for s in self.shapes]}

    def select(self, state, updates, weights):
        cfg = self.cfg
        points = np.stack([flatten(u) for u in updates])
        center, clipped = centered_clip(points, flatten(state["center"]), cfg.tau, cfg.iterations)
        aggregate = unflatten(center, updates[0])
        new_state = {"center": [a.copy() for a in aggregate]}
        return aggregate, new_state, {}, {"clipped": clipped}
