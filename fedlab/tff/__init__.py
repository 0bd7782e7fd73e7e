"""The only package of fedlab that imports tensorflow_federated."""

from fedlab.tff.fedavg import ClientWork, TffFedAvg
from fedlab.tff.runtime import LocalWorker, WorkerError

__all__ = ["ClientWork", "LocalWorker", "TffFedAvg", "WorkerError"]
