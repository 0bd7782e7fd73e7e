"""Min-max (Shejwalkar and Houmansadr 2021, "Manipulating the Byzantine: Optimizing Model
Poisoning Attacks and Defenses for Federated Learning", the AGR-agnostic attack): the colluding
malicious clients all upload the honest mean moved as far as possible along a perturbation p
while staying no farther from any honest update than the honest updates are from each other,

    Δ̃ = μ − γ p,   γ = max { γ : max_i ‖Δ̃ − Δ_i‖² ≤ max_{i,j} ‖Δ_i − Δ_j‖² },

with p the unit vector of μ (``unit_vec``, the default), its sign (``sign``) or the honest
updates' coordinate-wise standard deviation (``std``). γ is found as the authors' code finds it
(the NDSS'21 repository's ``our_attack_dist``, read in a public copy): start at γ = 10 and step
by halves (γ ± step/2, step halving) until two successive γ differ by at most 10⁻⁵, keeping the
last γ that met the bound (0 if none did). μ, p and the bound are over the round's benign
updates, or every honestly trained update where fewer than two are benign
(``fedlab.attacks.base.benign_view``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.aggregators.base import flatten, unflatten
from fedlab.attacks.base import ATTACKS, Attack, MaliciousConfig, benign_view, replace_malicious
from fedlab.errors import ConfigError

PERTURBATIONS = ("unit_vec", "sign", "std")


@dataclass
class MinMaxConfig(MaliciousConfig):
    perturbation: str = "unit_vec"  # p: unit_vec | sign | std
    gamma_init: float = 10.0  # where the search for γ starts
    tolerance: float = 1e-5  # it stops once γ moves by at most this

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.perturbation not in PERTURBATIONS:
            raise ConfigError(
                f"attack.perturbation={self.perturbation!r} is invalid; allowed: "
                f"{', '.join(PERTURBATIONS)}"
            )
        for key in ("gamma_init", "tolerance"):
            value = getattr(self, key)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"attack.{key}={value} is invalid; allowed: a number > 0")


def min_max_gamma(
    honest: np.ndarray, mean: np.ndarray, direction: np.ndarray, start: float, tolerance: float
) -> float:
    """The authors' search for γ over ``honest`` (one flattened update per row)."""
    squared = np.einsum("ij,ij->i", honest, honest)
    pairwise = squared[:, None] + squared[None, :] - 2 * honest @ honest.T
    bound = float(np.max(pairwise))
    gamma, step, succeeded = start, start, 0.0
    while abs(succeeded - gamma) > tolerance:
        crafted = mean - gamma * direction
        farthest = float(np.max(np.sum((honest - crafted) ** 2, axis=1)))
        if farthest <= bound:
            succeeded = gamma
            gamma = gamma + step / 2
        else:
            gamma = gamma - step / 2
        step = step / 2
    return succeeded


@ATTACKS.register("min_max")
class MinMax(Attack):
    Config = MinMaxConfig
    omniscient = True
    label = "min-max"

    def collude(self, updates, malicious, round_num):
        seen = benign_view(updates, malicious, need=2)
        honest = np.stack([flatten(u) for u in seen])
        mean = honest.mean(axis=0)
        kind = self.cfg.perturbation
        if kind == "unit_vec":
            norm = np.linalg.norm(mean)
            direction = mean / norm if norm > 0 else mean
        elif kind == "sign":
            direction = np.sign(mean)
        else:
            one = len(honest) < 2
            direction = np.zeros_like(mean) if one else honest.std(axis=0, ddof=1)
        gamma = min_max_gamma(honest, mean, direction, self.cfg.gamma_init, self.cfg.tolerance)
        crafted = unflatten(mean - gamma * direction, updates[0])
        return replace_malicious(updates, malicious, crafted), {"gamma": gamma}
