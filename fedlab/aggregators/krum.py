"""Krum (Blanchard, El Mhamdi, Guerraoui and Stainer 2017, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent"): the server keeps the one update closest to its
neighbours. With n updates of which at most f are malicious, each update i is scored by the sum
of its squared distances to its n − f − 2 nearest other updates,

    s(i) = Σ_{i→j} ‖Δ_i − Δ_j‖²,

and the update of least score is the aggregate, unweighted. It assumes n > 2f + 2 (then the
chosen update is close to the honest ones: Krum keeps an honest update whenever the honest ones
are closer to each other than to any malicious one, which f < (n − 2)/2 makes possible).
``f`` is that assumption (null: the most Krum tolerates in each round, ⌊(n − 3)/2⌋); a round
that samples fewer than 2f + 3 clients is refused when the config is composed (with f null:
fewer than 5, where Krum tolerates none). Logs ``aggregator/f`` and ``aggregator/kept`` (1) and,
under attack, ``aggregator/kept_malicious``: whether the chosen update was malicious.
Checked against Flower's ``aggregate_krum`` (``server/strategy/aggregate.py``: squared
distances, the n − f − 2 closest, argmin; it takes at least one neighbour, as fedlab does when
dropped clients leave fewer than 2f + 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, AggregatorConfig, Defence, flatten
from fedlab.errors import ConfigError


@dataclass
class KrumConfig(AggregatorConfig):
    f: int | None = None  # malicious clients assumed a round; null: the most it tolerates

    def __post_init__(self) -> None:
        if self.f is not None and self.f < 0:
            raise ConfigError(
                f"aggregator.f={self.f} is invalid; allowed: null (the most the rule tolerates "
                "each round) or an integer >= 0"
            )


def tolerated(n: int) -> int:
    """The most malicious updates Krum tolerates among n: n > 2f + 2."""
    return max(math.floor((n - 3) / 2), 0)


def assumed_f(cfg, n: int, most: int) -> int:
    """The f of a round of ``n`` updates: the configured one, at most ``most`` (what the rule
    tolerates among the updates that arrived), or ``most`` when null."""
    return most if cfg.f is None else min(cfg.f, most)


def squared_distances(vectors: np.ndarray) -> np.ndarray:
    """‖v_i − v_j‖² for every pair of rows, exact on the diagonal."""
    norms = np.einsum("ij,ij->i", vectors, vectors)
    d = norms[:, None] + norms[None, :] - 2 * vectors @ vectors.T
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def krum_scores(distances: np.ndarray, f: int) -> np.ndarray:
    """Each row's sum of squared distances to its n − f − 2 nearest others (at least one)."""
    n = len(distances)
    closest = min(max(n - f - 2, 1), n - 1)
    if closest <= 0:
        return np.zeros(n)
    others = np.sort(distances + np.diag(np.full(n, np.inf)), axis=1)
    return others[:, :closest].sum(axis=1)


class KrumBase(Defence):
    """What Krum, Multi-Krum and Bulyan share: f, its bounds and their one-line refusal."""

    Config = KrumConfig
    honest_majority = True
    #: n >= factor * f + 3
    factor = 2

    @classmethod
    def min_clients(cls, cfg) -> int:
        return cls.factor * (1 if cfg.f is None else cfg.f) + 3

    @classmethod
    def _why(cls, cfg) -> str:
        f = "f=1 (the least it is robust to; f null)" if cfg.f is None else f"f={cfg.f}"
        return f" for {f}: n >= {cls.factor}f + 3"


@AGGREGATORS.register("krum")
class Krum(KrumBase):
    label = "Krum"
    missing_on_tff = "TFF 0.87 has no Krum aggregator"

    def select(self, state, updates, weights):
        n = len(updates)
        f = assumed_f(self.cfg, n, tolerated(n))
        scores = krum_scores(squared_distances(np.stack([flatten(u) for u in updates])), f)
        chosen = int(np.argmin(scores))
        kept = np.zeros(n)
        kept[chosen] = 1
        return [np.array(a, np.float32) for a in updates[chosen]], state, {"f": f}, {"kept": kept}
