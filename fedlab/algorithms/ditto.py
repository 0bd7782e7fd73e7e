"""Ditto (Li, Hu, Beirami & Smith 2021, "Ditto: Fair and Robust Federated Learning Through
Personalization"), Algorithm 1.

The global model is trained as FedAvg trains it: each sampled client ``k`` runs its local
training from the round's global model ``w^t`` on its loss ``F_k`` to ``w_k^t``, and the server
steps with the example-weighted mean of the updates ``w^t - w_k^t`` (with server SGD at lr 1:
``w^{t+1} = sum_k n_k w_k^t / sum_k n_k``; any aggregator or server optimizer of the run).

Each client also keeps a personal model ``v_k`` of its own, which it trains in every round it
is sampled on the personal objective

    h_k(v; w^t) = F_k(v) + (lam / 2) * ||v - w^t||^2,

one step per batch:  ``v_k <- v_k - eta * (grad F_k(v_k; b) + lam * (v_k - w^t))``,  from its
stored ``v_k`` (``w^t`` the first time it is sampled), with ``w^t`` the global model the round
started from. ``lam = 0`` trains each personal model on its own data alone; as ``lam`` grows,
``v_k`` stays near ``w^t`` (the global model in the limit).

The number of personal steps (the paper's ``s``) is the global pass's: the personal model visits
the same batches in the same order (E epochs of batches of B, ``fedlab.core.sampling``), as the
authors' code (litian96/ditto, ``flearn/trainers_MTL/ditto.py``) takes one personal step on each
batch it takes a global step on. It uses the run's client optimizer, fresh each round (with
``client_optimizer=sgd`` and lr ``eta``: the step above exactly), and each step the global pass's
dropout seed. The personal model never leaves the client: Ditto communicates what FedAvg does.

One difference from the authors' code, which follows this issue's definition: there every
``v_k`` starts at the initial global model ``w^0``; here a client's first ``v_k`` is the global
model of the round it is first sampled in (the same for clients sampled in round 1).

``personal_model`` (personalized evaluation, ``fedlab.callbacks.personalized``) is ``v_k``, or
``w^t`` for a client never sampled. Each client's ``v_k`` is a model-sized array set kept in the
client-state store (``fedlab.core.client_state``, checkpointed, so a resumed run is bit-identical).
TFF 0.87 has no Ditto: ``engine=fast`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedlab.algorithms.base import ALGORITHMS, Algorithm, AlgorithmConfig


@dataclass
class DittoConfig(AlgorithmConfig):
    # lambda, the pull of each personal model towards the global one; the authors' run scripts
    # (litian96/ditto, run_*_ditto_lam1.sh) use 1, and the paper tunes it per dataset.
    lam: float = 1.0

    def __post_init__(self) -> None:
        from fedlab.errors import ConfigError

        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ConfigError(
                f"algorithm.lam={self.lam} is invalid; allowed: a finite number >= 0 (Ditto's "
                "lambda; 0 trains each personal model on its client's data alone)"
            )


@ALGORITHMS.register("ditto")
class Ditto(Algorithm):
    Config = DittoConfig
    engines = ("fast",)
    tff_builder = None
    tff_unweighted_builder = None
    missing_on_tff = "TFF 0.87 has no Ditto: it trains a personal model per client"
    personal = True

    @classmethod
    def recipe_name(cls, cfg, run, server_name: str) -> str:
        return "Ditto" if server_name == "FedAvg" else f"Ditto with {server_name}"

    def personal_start(self, weights, client_state):
        return weights if client_state is None else client_state

    def personal_gradient(self, grads, weights, global_weights):
        lam = self.cfg.lam
        if lam == 0:
            return grads
        return [g + lam * (v - w) for g, v, w in zip(grads, weights, global_weights, strict=True)]

    def personal_state(self, personal, client_state):
        return personal

    def personal_model(self, weights, client_state):
        return weights if client_state is None else client_state
