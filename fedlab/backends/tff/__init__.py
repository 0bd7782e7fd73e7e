"""``engine=tff``: the only package of fedlab that imports tensorflow_federated."""

from fedlab.backends.tff.engine import TffEngine
from fedlab.backends.tff.runtime import LocalWorker, WorkerError

__all__ = ["LocalWorker", "TffEngine", "WorkerError"]


def build(parts) -> TffEngine:
    return TffEngine(
        parts.make_model,
        parts.input_shape,
        parts.client_optimizer,
        parts.server_optimizer,
        parts.algorithm,
        parts.aggregator,
    )


def runtime(worker_env, log_path) -> LocalWorker:
    return LocalWorker(env=worker_env, log_path=log_path)
