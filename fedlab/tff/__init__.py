"""The only package of fedlab that imports tensorflow_federated."""

from fedlab.algorithm import ClientWork, RoundOutput
from fedlab.tff.fedavg import TffFedAvg
from fedlab.tff.runtime import LocalWorker, WorkerError

__all__ = ["ClientWork", "RoundOutput", "LocalWorker", "TffFedAvg", "WorkerError"]
