"""Federated Averaging (McMahan et al. 2017, Algorithm 1): clients run local SGD (or any client
optimizer) on their data, the server combines their updates weighted by examples.

With the server optimizer it is the whole FedOpt family of Reddi et al. 2020: server SGD with lr
1.0 is FedAvg, momentum FedAvgM, Adam / Yogi / Adagrad FedAdam / FedYogi / FedAdagrad. Every hook
of ``Algorithm`` already does what FedAvg does.
"""

from __future__ import annotations

from fedlab.algorithms.base import ALGORITHMS, Algorithm


@ALGORITHMS.register("fedavg")
class FedAvg(Algorithm):
    @classmethod
    def recipe_name(cls, cfg, run, server_name: str) -> str:
        # McMahan et al.'s FedSGD: one full-batch gradient step per client and round.
        client_sgd = str(run.client_optimizer.name) == "sgd"
        if server_name == "FedAvg" and run.E == 1 and run.B is None and client_sgd:
            return "FedSGD"
        return server_name
