"""FedDyn (Acar, Zhao, Matas, Mattina, Whatmough and Saligrama 2021, "Federated Learning Based on
Dynamic Regularization", ICLR), Algorithm 1.

Each client ``i`` keeps ``g_i``, the gradient of its loss at its last local model (zero until it
first trains; model-sized, in the client-state store, checkpointed). In round ``t`` a sampled
client starts from the global model ``theta^{t-1}`` and minimises its dynamically regularised
loss

    L_i(theta) - <g_i, theta> + (alpha/2) ||theta - theta^{t-1}||^2

with its own optimizer (local gradient ``grad L_i(theta) - g_i + alpha (theta - theta^{t-1})``),
reaching ``theta_i^t``; then it updates ``g_i <- g_i - alpha (theta_i^t - theta^{t-1})`` (the
first-order condition of its local problem: ``g_i`` becomes ``grad L_i(theta_i^t)``) and sends
``theta_i^t``. With ``P_t`` the round's clients and ``m`` all of them (``num_clients``), the
server keeps ``h`` (zero at first) and sets

    h^t     = h^{t-1} - alpha (1/m) sum_{i in P_t} (theta_i^t - theta^{t-1})
    theta^t = (1/|P_t|) sum_{i in P_t} theta_i^t - h^t / alpha

so ``h^t / alpha`` is minus the mean over all ``m`` clients of their summed past steps, and
``h^t = (1/m) sum_i g_i``. Checked against the authors' code (``github.com/alpemreacar/FedDyn``,
``utils_general.py`` ``train_feddyn_mdl``: the loss adds
``alpha * <theta, -theta^{t-1} + lpl_i>`` and SGD's weight decay adds ``alpha theta``, where
``lpl_i = sum of (theta_i - theta^{t-1})`` over the client's rounds is ``-g_i / alpha``;
``utils_methods.py`` ``train_FedDyn``: ``theta^t = mean_{P_t}(theta_i) + mean over all clients
of lpl_i``, which is the same ``theta^t``). That code also divides ``alpha`` by each client's
relative data size (``alpha / (n_i / mean n)``), clips gradients to norm 10 and adds weight
decay; this module is the paper's Algorithm 1 with one ``alpha``, and none of those.
The paper could not be read from here; its equations above are the ones that code computes.

In fedlab: ``local_gradient`` adds ``- g_i + alpha (theta - theta^{t-1})`` to the data loss's
gradient; each client's weight is 1 (``client_upload``), so the aggregator's mean of the updates
``theta^{t-1} - theta_i^t`` is the plain mean over ``P_t`` (clients whose update is finite);
server SGD with lr 1 takes the global model to ``mean(theta_i^t)``; ``server_update`` updates
``h`` from the same updates and ``server_model`` subtracts ``h / alpha``. Communication is
FedAvg's: ``g_i`` stays with the client and ``h`` with the server (each client's update travels
to ``server_update`` beside the aggregator's copy, inside this process).

Refused, in one line: ``alpha <= 0`` or not finite; another server optimizer than ``sgd`` with
``lr`` 1 (FedDyn sets the global model itself: a server step on the mean would change what
``h`` corrects); a robust aggregator (``needs_mean``: ``theta^t`` is built on the plain mean);
``privacy=dp_fedavg`` (``h`` is built from every client's exact model, which would reach the
server unclipped and without noise); compression (``h`` is built from each client's exact
model, which the server would receive compressed); ``engine=tff`` (TFF 0.87 has no FedDyn).
Any client optimizer may minimise the local objective (the paper's is SGD, this option's
default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.algorithms.base import ALGORITHMS, Algorithm, AlgorithmConfig
from fedlab.errors import ConfigError


@dataclass
class FedDynConfig(AlgorithmConfig):
    # The regulariser's strength; 0.01 in the authors' example (alpha_coef in
    # example_synthetic.py of github.com/alpemreacar/FedDyn).
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ConfigError(
                f"algorithm.alpha={self.alpha} is invalid; allowed: a finite number > 0"
            )


@ALGORITHMS.register("feddyn")
class FedDyn(Algorithm):
    Config = FedDynConfig
    engines = ("fast",)
    tff_builder = None
    tff_unweighted_builder = None
    missing_on_tff = "TFF 0.87 has no FedDyn"
    num_client_inputs = 1  # the client's g_i
    needs_mean = True

    @classmethod
    def check(cls, cfg, run) -> None:
        super().check(cfg, run)
        server = run.server_optimizer
        if str(server.name) != "sgd" or float(server.lr) != 1.0:
            given = (
                f"server_optimizer={server.name}"
                if str(server.name) != "sgd"
                else f"server_optimizer.lr={server.lr}"
            )
            raise ConfigError(
                f"algorithm=feddyn with {given}: FedDyn sets the global model to "
                "mean(theta_i) - h/alpha itself, which a server step on the mean would change; "
                "allowed: server_optimizer=sgd with server_optimizer.lr=1.0"
            )
        privacy = str(run.privacy.name)
        if privacy != "none":
            raise ConfigError(
                f"algorithm=feddyn with privacy={privacy}: FedDyn's server state h is built "
                "from every client's exact model, which would reach the server unclipped and "
                "without noise; allowed: privacy=none"
            )
        compression = str(run.compression.name)
        if compression != "none":
            raise ConfigError(
                f"algorithm=feddyn with compression={compression}: FedDyn's server state h is "
                "built from each client's exact model, which the server would receive "
                "compressed; allowed: compression=none"
            )

    @classmethod
    def recipe_name(cls, cfg, run, server_name: str) -> str:
        return "FedDyn"

    def initial_state(self, shapes):
        return {"h": [np.zeros(s, np.float32) for s in shapes]}

    def client_inputs(self, state, client_state, shapes):
        if client_state is None:
            return [[np.zeros(s, np.float32) for s in shapes]]  # g_i = 0
        return [list(client_state)]

    def local_gradient(self, grads, weights, initial, inputs):
        (g_i,) = inputs
        alpha = self.cfg.alpha
        return [
            g - gi + alpha * (w - w0)
            for g, gi, w, w0 in zip(grads, g_i, weights, initial, strict=True)
        ]

    def client_result(self, update, steps, inputs, client_state, state):
        # g_i <- g_i - alpha (theta_i - theta^{t-1}), and theta_i - theta^{t-1} = -update.
        (g_i,) = inputs
        alpha = np.float32(self.cfg.alpha)
        new_g = [g + alpha * u for g, u in zip(g_i, update, strict=True)]
        return {"update": update}, new_g

    def client_upload(self, update, weight, steps, client_state):
        return update, 1.0  # the plain mean over the round's clients

    def server_update(self, state, uploads):
        # h <- h - alpha (1/m) sum_i (theta_i - theta^{t-1}) = h + (alpha/m) sum_i update_i.
        scale = np.float32(self.cfg.alpha / self.num_clients)
        h = [np.array(a) for a in state["h"]]
        for upload in uploads:
            h = [a + u * scale for a, u in zip(h, upload["update"], strict=True)]
        norm = float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in h)))
        return {"h": h}, {"h_norm": norm}

    def server_model(self, state, weights):
        inverse = np.float32(1.0 / self.cfg.alpha)
        return [w - a * inverse for w, a in zip(weights, state["h"], strict=True)]
