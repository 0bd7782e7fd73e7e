"""FedAvg with weight decay in the local objective: each client minimises
``f_i(w) + (lambda / 2) * ||w||^2``, so every local step follows ``g(w) + lambda * w``.

An outside algorithm is a subclass of ``fedlab.algorithms.Algorithm`` overriding the hooks it
changes (here one: the local gradient); its keys are its ``Config`` (a dataclass extending
``AlgorithmConfig``), checked like fedlab's own. It names no TFF builder, so fedlab runs it on
``engine=fast`` and refuses ``engine=tff`` in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedlab.algorithms import Algorithm, AlgorithmConfig
from fedlab.errors import ConfigError


@dataclass
class WeightDecayConfig(AlgorithmConfig):
    weight_decay: float = 1e-4  # lambda

    def __post_init__(self) -> None:
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(
                f"algorithm.weight_decay={self.weight_decay} is invalid; allowed: a finite "
                "number >= 0"
            )


class WeightDecayFedAvg(Algorithm):
    Config = WeightDecayConfig

    def local_gradient(self, grads, weights, initial, inputs):
        decay = self.cfg.weight_decay
        return [g + decay * w for g, w in zip(grads, weights, strict=True)]
