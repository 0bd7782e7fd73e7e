"""What the round loop and an engine pass each other, free of TFF and of TensorFlow.

An engine (``fedlab.backends.fast.FastEngine``: the algorithm in this process;
``fedlab.backends.tff.TffEngine``: TFF's own builders in TFF's worker process) exposes
``initialize`` / ``next`` / ``model_weights`` / ``state_arrays`` / ``state_from_arrays``, as
fedjax's algorithms expose init/apply. The round loop (``fedlab.core.loop``) samples the
clients, builds their ``ClientWork`` and reads the ``RoundOutput``; it never knows which engine,
algorithm or aggregator runs the round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ClientWork:
    """What one sampled client trains on in one round.

    ``order`` holds, per local epoch, the order in which the client visits its examples
    (shape ``(E, n)``, indices into ``x``/``y``); each epoch is cut into batches of ``batch_size``
    (``None``: the whole local dataset, the paper's B=∞). ``client_id`` names the client, and
    ``state`` is what the algorithm (and the compressor, with error feedback) kept for it from its
    last round (``None`` the first time, or when nothing is kept per client).
    """

    x: np.ndarray
    y: np.ndarray
    order: np.ndarray
    batch_size: int | None
    client_id: int = -1
    state: list[np.ndarray] | None = None
    round_num: int = 0  # seeds what a client draws at random (stochastic quantization)


@dataclass(frozen=True)
class RoundOutput:
    """The new server state and what the round measured.

    TFF hides divergence: a client whose update is not finite gets weight 0 and its metrics drop
    out (``examples_trained < examples_expected``), and a mean update that is not finite is not
    applied (``update_skipped``). Every engine reports the same way, and the round loop turns
    both into errors or metrics.

    ``client_states`` maps each client id whose per-client state changed to its new state;
    ``algorithm_metrics`` are the algorithm's own (logged under ``algorithm/``),
    ``aggregator_metrics`` the aggregator's (``aggregator/``: DP's clipping norm),
    ``attack_metrics`` the attack's (``attack/``: how many malicious clients took part).
    ``update_bytes`` is what the sampled clients' model updates took on the wire, encoded
    (``fedlab.compression``); None: one float32 copy of the model each.
    """

    state: Any
    train_loss: float
    train_accuracy: float
    examples_trained: int
    examples_expected: int
    update_skipped: bool
    client_states: dict[int, list[np.ndarray]] = field(default_factory=dict)
    algorithm_metrics: dict[str, float] = field(default_factory=dict)
    aggregator_metrics: dict[str, float] = field(default_factory=dict)
    attack_metrics: dict[str, float] = field(default_factory=dict)
    update_bytes: int | None = None


@dataclass(frozen=True)
class Progress:
    """What a run has reached; saved in every checkpoint."""

    round: int = 0
    history: dict[int, float] = field(default_factory=dict)  # test accuracy by evaluated round
    rounds_to_target: int | None = None
    total_mb: float = 0.0
    # Where and why the run diverged, when divergence ends it (a run under attack), else None.
    diverged: str | None = None


@dataclass
class TrainingContext:
    """The run as the callbacks see it: its config, engine, state and what it has reached."""

    cfg: Any  # RunConfig
    engine: Any
    state: Any
    progress: Progress
    tracker: Any
    algorithm: Any
    model_bytes: int  # one copy of the model's weights, as float32
    stop: bool = False  # a callback sets it to end the run after this round
    stop_reason: str | None = None  # and, if it likes, says why (the run's summary shows it)


@dataclass
class RoundRecord:
    """One finished round: the engine's output, the metrics collected for it, and the progress
    the run will have reached once it is committed."""

    round: int
    output: RoundOutput
    clients: int  # how many were sampled
    progress: Progress
    metrics: dict[str, float]
    started: float = field(default_factory=time.monotonic)


class Engine(Protocol):
    """One federated algorithm, one round at a time."""

    def initialize(self, weights: list[np.ndarray]) -> Any:
        """The server state, with the global model set to ``weights`` (Keras order)."""

    def next(self, state: Any, clients: list[ClientWork]) -> RoundOutput:
        """One round on the sampled clients."""

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
