"""Model replacement (Bagdasaryan et al. 2020, "How To Backdoor Federated Learning", eq. 3): a
malicious client trains on backdoored data (``fedlab.attacks.backdoor``: the same trigger,
target and share of examples) and boosts its update so that, averaged with the others, it
replaces the global model by its own. With FedAvg's server step ``G + η/n Σ (L_i − G)`` it
uploads

    L̃ = γ (X − G) + G,   γ = n / η,

i.e. in fedlab's terms (an update is ``G − L``) its update times γ. ``boost`` sets γ; null gives
Bagdasaryan's ``n / η`` with n the clients a round and η the learning rate of
``server_optimizer=sgd``; with another server optimizer, whose step is not η times the mean,
null gives γ = n, which makes the round's mean the attacker's update when the honest ones
roughly cancel. Checked against DBA's MNIST setting (AI-secure/DBA ``utils/mnist_params.yaml``:
``scale_weights_poison: 100`` with 10 clients a round and ``eta: 0.1``, i.e. n / η).

A boosted update is large: norm bounding (``aggregator=norm_bounding``, Sun et al. 2019) and
DP-FedAvg's clipping are the defences the paper names."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.attacks.backdoor import Backdoor, BackdoorConfig
from fedlab.attacks.base import ATTACKS
from fedlab.errors import ConfigError


@dataclass
class ScalingConfig(BackdoorConfig):
    boost: float | None = None  # γ; null: clients a round / server lr (sgd), else clients a round

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.boost is not None and not (self.boost > 0 and math.isfinite(self.boost)):
            raise ConfigError(
                f"attack.boost={self.boost} is invalid; allowed: null (n / server lr) or a "
                "finite number > 0"
            )


def boost_of(cfg: ScalingConfig, run) -> float:
    """γ for the run: ``cfg.boost``, or n / η (server SGD), or n."""
    if cfg.boost is not None:
        return float(cfg.boost)
    n = run.clients_per_round
    server = run.server_optimizer
    return n / float(server.lr) if server.name == "sgd" else float(n)


@ATTACKS.register("scaling")
class Scaling(Backdoor):
    Config = ScalingConfig
    poisons_updates = True
    label = "model replacement"

    def __init__(self, cfg, run) -> None:
        super().__init__(cfg, run)
        self.boost = boost_of(cfg, run)

    def poison_update(self, update, weight, round_num, client_id):
        boost = np.float32(self.boost)
        return [boost * u for u in update], weight
