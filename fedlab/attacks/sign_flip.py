"""Sign flipping: a malicious client uploads its honestly trained update negated and scaled,

    Δ̃_k = −s · Δ_k,

pushing the global model up the loss instead of down it. Its weight (examples) is its own.
Default strength ``scale`` s = 4: the −4 of RSA's sign-flipping attack (Li et al. 2019, "RSA:
Byzantine-Robust Stochastic Aggregation Methods for Distributed Learning"), checked against
the ``sign_scale=-4`` default of a public reimplementation (not against the paper's text, which
was not at hand); s = 1 is the "bit flipping" of Karimireddy et al. 2021. With a fraction q of
malicious clients the example-weighted mean moves by (1 − q − q·s) times the honest mean: with
s = 4 any q above 1/5 reverses it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.attacks.base import ATTACKS, Attack, MaliciousConfig
from fedlab.errors import ConfigError


@dataclass
class SignFlipConfig(MaliciousConfig):
    scale: float = 4.0  # s: the negated update times s

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ConfigError(
                f"attack.scale={self.scale} is invalid; allowed: a finite number > 0 (the "
                "upload is -scale times the honest update)"
            )


@ATTACKS.register("sign_flip")
class SignFlip(Attack):
    Config = SignFlipConfig
    poisons_updates = True
    label = "sign flipping"

    def poison_update(self, update, weight, round_num, client_id):
        scale = np.float32(-self.cfg.scale)
        return [scale * u for u in update], weight
