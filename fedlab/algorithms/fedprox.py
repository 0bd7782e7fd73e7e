"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks").

Each client minimises its loss plus the proximal term ``(mu/2) * ||w - w_global||^2``, which
keeps local training near the global model when clients' data differ: the local gradient gains
``mu * (w - w_global)``. Everything else is FedAvg's (example-weighted updates, the server
optimizer), so ``mu=0`` is FedAvg exactly.

``engine=tff`` would run TFF's ``build_weighted_fed_prox(proximal_strength=mu)``, but TFF 0.87
adds ``mu * (w_global - w)`` to the gradient (``templates/proximal_client_work.py``:
``lambda x, y: delta_l2_regularizer * (y - x)`` over the model's and the initial weights): the
gradient of ``-(mu/2)||w - w_global||^2``, which pushes local training away from the global
model. ``tests/test_fedprox.py`` shows it: TFF's rounds equal this engine's with that sign
flipped. So ``engine=tff`` is refused for ``mu > 0``; with ``mu=0`` both are FedAvg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedlab.algorithms.base import ALGORITHMS, Algorithm, AlgorithmConfig


@dataclass
class FedProxConfig(AlgorithmConfig):
    mu: float = 0.01  # the proximal strength; Li et al. try 0.001, 0.01, 0.1, 1

    def __post_init__(self) -> None:
        from fedlab.errors import ConfigError

        if not (self.mu >= 0 and math.isfinite(self.mu)):
            raise ConfigError(f"algorithm.mu={self.mu} is invalid; allowed: a finite number >= 0")


@ALGORITHMS.register("fedprox")
class FedProx(Algorithm):
    Config = FedProxConfig
    tff_builder = "build_weighted_fed_prox"
    tff_unweighted_builder = "build_unweighted_fed_prox"
    client_hparams_in_state = False  # TFF's proximal client work keeps no state

    @classmethod
    def check(cls, cfg, run) -> None:
        from fedlab.errors import ConfigError

        if str(run.engine) == "tff" and cfg.mu > 0:
            raise ConfigError(
                f"algorithm=fedprox with algorithm.mu={cfg.mu} cannot run on engine=tff: TFF "
                "0.87's build_weighted_fed_prox adds mu*(w_global - w) to the gradient, the "
                "opposite sign of Li et al.'s proximal term; allowed: engine=fast, or "
                "algorithm.mu=0"
            )

    @classmethod
    def recipe_name(cls, cfg, run, server_name: str) -> str:
        return "FedProx" if server_name == "FedAvg" else f"FedProx with {server_name}"

    def tff_arguments(self):
        return {"proximal_strength": self.cfg.mu}

    def local_gradient(self, grads, weights, initial, inputs):
        mu = self.cfg.mu
        if mu == 0:
            return grads  # as TFF: no term at all, so mu=0 is FedAvg bit for bit
        return [g + mu * (w - w0) for g, w, w0 in zip(grads, weights, initial, strict=True)]
