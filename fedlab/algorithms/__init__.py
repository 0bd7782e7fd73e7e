"""Federated algorithms: what a client computes, what it uploads, how the server combines it.

One module per algorithm, registered by name (the ``algorithm`` config group). The round loop,
client sampling and evaluation live in ``fedlab.core``; the server optimizer (the FedOpt axis of
Reddi et al. 2020) and the aggregator are chosen separately, so ``algorithm=fedprox
server_optimizer=adam aggregator=median`` is one valid recipe. ``fedlab/algorithms/fedprox.py``
is the worked example of adding one (docs/extending.md).
"""

from fedlab.algorithms.base import ALGORITHMS, Algorithm, AlgorithmConfig, build_algorithm

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmConfig", "build_algorithm"]
