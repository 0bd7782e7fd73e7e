"""The only package of fedlab that imports tensorflow_federated."""

from fedlab.tff.fedavg import ClientWork, RoundOutput, TffFedAvg
from fedlab.tff.runtime import LocalWorker, WorkerError

__all__ = ["ClientWork", "RoundOutput", "LocalWorker", "TffFedAvg", "WorkerError"]
