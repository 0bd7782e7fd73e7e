"""fedlab's in-process FedAvg engine: TFF's ``build_weighted_fed_avg`` arithmetic, without TFF.

Nothing here imports tensorflow_federated (importing it and starting its worker costs seconds);
``tests/test_fast.py`` checks the result against TFF's own computation round for round.
"""

from fedlab.fast.fedavg import FastFedAvg, FastState

__all__ = ["FastFedAvg", "FastState"]
