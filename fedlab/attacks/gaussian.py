"""Gaussian (random) updates: a malicious client uploads, instead of its update, a vector of
independent normal coordinates,

    Δ̃_k ~ N(0, σ² I),

drawn from the run's seed, the round and the client (``fedlab.streams.attack_update``), so a
round is reproducible in any order. Default σ = 200: the Gaussian Byzantine workers of Blanchard
et al. 2017 (Krum's paper) as recalled, not checked against its text here; public
reimplementations take the magnitude as a parameter (Flower's FLANDERS baseline:
``magnitude``). Such updates are far from every honest one, so distance-based rules (Krum,
Bulyan, the geometric median) drop them; the mean follows them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab import streams
from fedlab.attacks.base import ATTACKS, Attack, MaliciousConfig
from fedlab.errors import ConfigError


@dataclass
class GaussianConfig(MaliciousConfig):
    std: float = 200.0  # σ of every coordinate of the random update

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.std > 0 and math.isfinite(self.std)):
            raise ConfigError(f"attack.std={self.std} is invalid; allowed: a finite number > 0")


@ATTACKS.register("gaussian")
class Gaussian(Attack):
    Config = GaussianConfig
    poisons_updates = True
    label = "Gaussian updates"

    def poison_update(self, update, weight, round_num, client_id):
        rng = streams.attack_update(self.seed, round_num, client_id)
        std = self.cfg.std
        return [rng.normal(0.0, std, u.shape).astype(np.float32) for u in update], weight
