"""SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning"), Algorithm 1 with option II.

The server keeps a control variate ``c`` and each client ``i`` its own ``c_i`` (zero until it
first trains), both model-shaped. Every local step follows the corrected gradient
``g(y) - c_i + c``. After K local steps of learning rate ``lr`` from the global ``x`` to ``y_i``,
the client's new control variate is ``c_i+ = c_i - c + (x - y_i) / (K * lr)`` (option II); it
uploads its update ``x - y_i`` and ``delta_c_i = c_i+ - c_i``, and keeps ``c_i+``. The server
combines the updates with the run's aggregator and server optimizer (server SGD with lr ``eta_g``
is Algorithm 1's ``x + eta_g * mean(y_i - x)``; the mean is weighted by examples, as for FedAvg,
which is Algorithm 1's plain mean when clients are of equal size), and sets
``c = c + (1/N) * sum_i delta_c_i`` over the clients that trained (N: all clients).

Option II divides by the client learning rate, so the client optimizer must be plain SGD. The
model and ``c`` go to each client and the update and ``delta_c_i`` come back: twice FedAvg's
communication. TFF 0.87 has no SCAFFOLD: ``engine=fast`` only.
"""

from __future__ import annotations

import numpy as np

from fedlab.algorithms.base import ALGORITHMS, Algorithm


@ALGORITHMS.register("scaffold")
class Scaffold(Algorithm):
    engines = ("fast",)
    tff_builder = None
    tff_unweighted_builder = None
    missing_on_tff = "TFF 0.87 has no SCAFFOLD"
    broadcast_copies = 2  # x and c
    upload_copies = 2  # the update and delta_c_i
    num_client_inputs = 1  # the correction c - c_i

    @classmethod
    def check(cls, cfg, run) -> None:
        from fedlab.errors import ConfigError

        client = str(run.client_optimizer.name)
        if run.client_optimizer.lr_decay != 1:
            raise ConfigError(
                f"algorithm=scaffold with client_optimizer.lr_decay={run.client_optimizer.lr_decay}"
                ": option II divides by one client learning rate; allowed: lr_decay=1"
            )
        if client != "sgd":
            raise ConfigError(
                f"algorithm=scaffold needs client_optimizer=sgd (option II divides by the "
                f"client learning rate), not client_optimizer={client}; allowed: "
                "client_optimizer=sgd"
            )

    @classmethod
    def recipe_name(cls, cfg, run, server_name: str) -> str:
        return "SCAFFOLD" if server_name == "FedAvg" else f"SCAFFOLD with {server_name}"

    def initial_state(self, shapes):
        return {"control": [np.zeros(s, np.float32) for s in shapes]}

    def client_inputs(self, state, client_state, shapes):
        c = state["control"]
        if client_state is None:
            return [[np.array(a) for a in c]]  # c_i = 0
        return [[a - b for a, b in zip(c, client_state, strict=True)]]

    def local_gradient(self, grads, weights, initial, inputs):
        (correction,) = inputs
        return [g + k for g, k in zip(grads, correction, strict=True)]

    def client_result(self, update, steps, inputs, client_state, state):
        c = state["control"]
        c_i = client_state if client_state is not None else [np.zeros_like(a) for a in c]
        scale = np.float32(1.0 / (steps * self.client_optimizer.learning_rate))
        new_c_i = [ci - cc + u * scale for ci, cc, u in zip(c_i, c, update, strict=True)]
        delta = [n - ci for n, ci in zip(new_c_i, c_i, strict=True)]
        return {"control_delta": delta}, new_c_i

    def server_update(self, state, uploads):
        c = [np.array(a) for a in state["control"]]
        scale = np.float32(1.0 / self.num_clients)
        for upload in uploads:
            c = [a + d * scale for a, d in zip(c, upload["control_delta"], strict=True)]
        norm = float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in c)))
        return {"control": c}, {"control_norm": norm}
