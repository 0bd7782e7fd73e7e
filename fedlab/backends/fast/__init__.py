"""``engine=fast``: fedlab's in-process engine, TFF's arithmetic without TFF.

Nothing here imports tensorflow_federated (importing it and starting its worker costs seconds);
``tests/test_fast.py`` checks the result against TFF's own computation round for round.
"""

from fedlab.backends.fast.engine import FastEngine, FastState

__all__ = ["FastEngine", "FastState"]


def build(parts) -> FastEngine:
    return FastEngine(
        parts.make_model(),
        parts.client_optimizer,
        parts.server_optimizer,
        parts.algorithm,
        parts.aggregator,
        compressor=parts.compressor,
        target_shape=parts.target_shape,
        pad_label=parts.pad_label,
        seed=parts.seed,
        placement=parts.placement,
        attack=parts.attack,
    )


def runtime(worker_env, log_path):
    import contextlib

    return contextlib.nullcontext()  # nothing runs beside this process
