"""FedNova (Wang, Liu, Liang, Joshi and Poor 2020, "Tackling the Objective Inconsistency Problem
in Heterogeneous Federated Optimization", NeurIPS): normalised averaging.

Client ``i`` trains from the global model ``x`` with ``tau_i`` local steps (one per batch here:
``tau_i = E * ceil(n_i / B)``, so clients of different sizes take different numbers of steps).
With learning rate ``eta`` its update is ``x - y_i = eta * G_i a_i``, where ``G_i`` stacks the
stochastic gradients of its steps and ``a_i`` says how much each of them moved the model:

- client SGD: ``a_i = [1, ..., 1]``, so ``||a_i||_1 = tau_i``;
- client SGD with momentum ``rho`` (``m = rho m + g; y = y - eta m``, fedlab's ``sgdm``): the
  k-th of ``tau_i`` gradients enters with ``(1 - rho^(tau_i - k + 1)) / (1 - rho)``, so
  ``||a_i||_1 = [tau_i - rho (1 - rho^tau_i) / (1 - rho)] / (1 - rho)``.

FedAvg's mean ``sum_i p_i (x - y_i)``, ``p_i = n_i / sum_j n_j``, weighs a client by its steps as
well as by its data, and converges to the optimum of a different objective (the paper's
objective inconsistency). FedNova averages the normalised updates instead and rescales them by
the effective number of steps:

    d_i = (x - y_i) / ||a_i||_1 = eta G_i a_i / ||a_i||_1
    x+  = x - tau_eff * sum_i p_i d_i,      tau_eff = sum_i p_i ||a_i||_1

which is the paper's ``x^(t+1,0) - x^(t,0) = -tau_eff sum_i p_i eta d_i`` with
``d_i = G_i a_i / ||a_i||_1`` (``eta`` is inside ``d_i`` here). With SGD,
``tau_eff = sum_i p_i tau_i``, the paper's choice. With momentum, ``tau_eff`` is
``sum_i p_i ||a_i||_1``, as the authors' code computes it (``github.com/JYWa/FedNova``,
``distoptim/FedNova.py``: ``local_normalizing_vec`` accumulates ``||a_i||_1`` step by step, with
``local_counter = rho * local_counter + 1``, and ``average()`` scales each client's accumulated
update by ``ratio * tau_eff / ||a_i||_1`` with ``tau_eff`` the ratio-weighted sum of the
clients' ``||a_i||_1``; it uses ``sum_i p_i tau_i`` only with a proximal term, which fedlab's
FedNova does not have). So FedNova is FedAvg whenever every client takes the same steps. The
update rule and the closed form were checked against that code, Flower's baseline
(``adap/flower``, ``baselines/fednova/fednova/strategy.py``) and other public implementations
that state the paper's equations; the paper itself could not be read from here.

In fedlab: each client uploads ``d_i`` (``client_upload``) and ``||a_i||_1`` (``client_result``);
the aggregator's example-weighted mean of the ``d_i`` is ``sum_i p_i d_i`` (a client's weight is
the examples it trained, ``E n_i``, proportional to ``n_i``; ``p_i`` is over the round's clients
whose update is finite); ``server_aggregate`` multiplies it by ``tau_eff``; the server optimizer
then steps with it as with FedAvg's mean (``server_optimizer=sgd`` with ``lr`` 1, the default of
``algorithm=fednova``, is the paper's ``x+``; another server optimizer takes it as its
pseudo-gradient). Communication: FedAvg's, plus one number a client.

Refused, in one line: another client optimizer than ``sgd``/``sgdm`` (an adaptive optimizer
scales each coordinate by its own history, so no ``a_i`` describes its update); a robust
aggregator (``needs_mean``: the median of the ``d_i`` is not their ``p_i``-weighted mean);
``privacy=dp_fedavg`` (its clipped sum weighs every client alike, not by ``p_i``, and each
client's ``||a_i||_1``, a function of its data size, would reach the server without noise);
``engine=tff`` (TFF 0.87 has no FedNova).
"""

from __future__ import annotations

import numpy as np

from fedlab.algorithms.base import ALGORITHMS, Algorithm
from fedlab.errors import ConfigError

# The client optimizers whose ``a_i`` is known in closed form.
CLIENT_OPTIMIZERS = ("sgd", "sgdm")


def a_norm(steps: int, momentum: float) -> float:
    """``||a_i||_1`` after ``steps`` local steps of SGD with ``momentum`` (0: plain SGD)."""
    rho = float(momentum)
    if rho == 0:
        return float(steps)
    return (steps - rho * (1 - rho**steps) / (1 - rho)) / (1 - rho)


@ALGORITHMS.register("fednova")
class FedNova(Algorithm):
    engines = ("fast",)
    tff_builder = None
    tff_unweighted_builder = None
    missing_on_tff = "TFF 0.87 has no FedNova"
    needs_mean = True

    @classmethod
    def check(cls, cfg, run) -> None:
        super().check(cfg, run)
        client = str(run.client_optimizer.name)
        if client not in CLIENT_OPTIMIZERS:
            raise ConfigError(
                f"algorithm=fednova with client_optimizer={client}: FedNova normalises each "
                "update by ||a_i||_1, known for SGD with or without momentum only; allowed: "
                f"client_optimizer={'|'.join(CLIENT_OPTIMIZERS)}"
            )
        privacy = str(run.privacy.name)
        if privacy != "none":
            raise ConfigError(
                f"algorithm=fednova with privacy={privacy}: DP-FedAvg's clipped sum weighs every "
                "client alike, not by p_i = n_i/n, and each client's local steps would reach the "
                "server without noise; allowed: privacy=none"
            )

    @classmethod
    def recipe_name(cls, cfg, run, server_name: str) -> str:
        return "FedNova" if server_name == "FedAvg" else f"FedNova with {server_name}"

    def _a_norm(self, steps: int) -> float:
        return a_norm(steps, getattr(self.client_optimizer.cfg, "momentum", 0.0))

    def client_result(self, update, steps, inputs, client_state, state):
        return {"a_norm": [np.array(self._a_norm(steps), np.float64)]}, None

    def client_upload(self, update, weight, steps, client_state):
        a = self._a_norm(steps)
        if a == 0:  # no local step (no examples): its update is zero, and so is d_i
            return update, weight
        scale = np.float32(1.0 / a)
        return [u * scale for u in update], weight

    def server_aggregate(self, state, aggregate, uploads, weights):
        total = float(np.sum(weights, dtype=np.float64))
        if total == 0:
            return aggregate
        tau_eff = sum(w * float(u["a_norm"][0]) for w, u in zip(weights, uploads, strict=True))
        scale = np.float32(tau_eff / total)
        return [a * scale for a in aggregate]
