"""Inner-product manipulation (IPM; Xie, Koyejo and Gupta 2020, "Fall of Empires: Breaking
Byzantine-tolerant SGD by Inner Product Manipulation"): the colluding malicious clients all
upload the honest updates' mean, negated and scaled,

    Δ̃ = −ε · (1/|H|) Σ_{i∈H} Δ_i,

so that the aggregate's inner product with the true gradient turns negative. A small ε keeps the
crafted update close to the honest ones, inside what the median and Krum accept; a large ε
beats the mean. The formula is checked against Karimireddy et al.'s code
(epfml/byzantine-robust-optimizer ``codes/attacks/xie.py``: ``-epsilon * sum(good) / len(good)``);
the default ε = 0.1 is the small ε of Xie et al.'s experiments as recalled, and the value public
reimplementations set (``IPMAttack(epsilon=0.1)``), not checked against the paper's text. H: the
round's benign updates, or every honestly trained update if
none is benign (``fedlab.attacks.base.benign_view``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.attacks.base import ATTACKS, Attack, MaliciousConfig, benign_view, replace_malicious
from fedlab.errors import ConfigError


@dataclass
class IpmConfig(MaliciousConfig):
    epsilon: float = 0.1  # ε: the crafted update is -ε times the honest mean

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(
                f"attack.epsilon={self.epsilon} is invalid; allowed: a finite number > 0"
            )


@ATTACKS.register("ipm")
class Ipm(Attack):
    Config = IpmConfig
    omniscient = True
    label = "IPM"

    def collude(self, updates, malicious, round_num):
        seen = benign_view(updates, malicious, need=1)
        eps = self.cfg.epsilon
        crafted = [
            (-eps * np.stack(layer).astype(np.float64).mean(axis=0)).astype(np.float32)
            for layer in zip(*seen, strict=True)
        ]
        return replace_malicious(updates, malicious, crafted), {}
