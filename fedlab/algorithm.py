"""What every FedAvg engine exchanges with the round loop, free of TFF and of TensorFlow.

An engine (``fedlab.tff.TffFedAvg``: TFF's ``build_weighted_fed_avg`` in TFF's worker process;
``fedlab.fast.FastFedAvg``: the same arithmetic in this process) exposes ``initialize`` /
``next`` / ``model_weights`` / ``state_arrays`` / ``state_from_arrays``, as fedjax's algorithms
expose init/apply. The round loop (``fedlab.experiment``) samples the clients, builds their
``ClientWork`` and reads the ``RoundOutput``; it never knows which engine runs the round.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedlab.config import Engine, OptimizerConfig


@dataclass(frozen=True)
class ClientWork:
    """What one sampled client trains on in one round.

    ``order`` holds, per local epoch, the order in which the client visits its examples
    (shape ``(E, n)``, indices into ``x``/``y``); each epoch is cut into batches of ``batch_size``
    (``None``: the whole local dataset, the paper's B=∞).
    """

    x: np.ndarray
    y: np.ndarray
    order: np.ndarray
    batch_size: int | None


@dataclass(frozen=True)
class RoundOutput:
    """The new server state and what the round measured.

    TFF hides divergence: a client whose update is not finite gets weight 0 and its metrics drop
    out (``examples_trained < examples_expected``), and a mean update that is not finite is not
    applied (``update_skipped``). Every engine reports the same way, and the round loop turns
    both into errors or metrics.
    """

    state: Any
    train_loss: float
    train_accuracy: float
    examples_trained: int
    examples_expected: int
    update_skipped: bool


class FedAvgEngine(Protocol):
    """FedAvg and its server-optimizer variants (Reddi et al. 2020), one round at a time."""

    def initialize(self, weights: list[np.ndarray]) -> Any:
        """The server state, with the global model set to ``weights`` (Keras order)."""

    def next(self, state: Any, clients: list[ClientWork]) -> RoundOutput:
        """One round of FedAvg on the sampled clients."""

    def model_weights(self, state: Any) -> list[np.ndarray]:
        """The global model's weights in Keras order (trainable, then non-trainable)."""

    def state_arrays(self, state: Any) -> list[np.ndarray]:
        """The whole server state as a flat list of arrays (what a checkpoint stores)."""

    def state_from_arrays(self, arrays: list[np.ndarray]) -> Any:
        """The server state back from ``state_arrays``; ValueError if it does not fit."""


def check_state_arrays(arrays: list[np.ndarray], template: list[np.ndarray]) -> None:
    """ValueError unless ``arrays`` (a checkpoint's) fit this engine's state ``template``: the
    same number of arrays, each of the same shape and dtype."""
    if len(arrays) != len(template):
        raise ValueError(f"{len(arrays)} arrays, this algorithm's state has {len(template)}")
    for i, (got, want) in enumerate(zip(arrays, template, strict=True)):
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(
                f"array {i} is {got.dtype}{list(got.shape)}, "
                f"this algorithm's state has {want.dtype}{list(want.shape)}"
            )


def build_engine(
    engine: Engine,
    model_name: str,
    client_optimizer: OptimizerConfig,
    server_optimizer: OptimizerConfig,
) -> FedAvgEngine:
    """The engine ``engine`` names; TFF is imported only when it is the one asked for."""
    if engine is Engine.tff:
        from fedlab.tff import TffFedAvg

        return TffFedAvg(model_name, client_optimizer, server_optimizer)
    from fedlab.fast import FastFedAvg

    return FastFedAvg(model_name, client_optimizer, server_optimizer)


def engine_runtime(
    engine: Engine, worker_env: dict[str, str], log_path: Path
) -> contextlib.AbstractContextManager:
    """What must run around the rounds: TFF's worker process for ``tff``, nothing otherwise."""
    if engine is Engine.tff:
        from fedlab.tff import LocalWorker

        return LocalWorker(env=worker_env, log_path=log_path)
    return contextlib.nullcontext()
