"""The callback interface and what it is given."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fedlab.core.types import RoundOutput


@dataclass(frozen=True)
class Progress:
    """What a run has reached; saved in every checkpoint."""

    round: int = 0
    history: dict[int, float] = field(default_factory=dict)  # test accuracy by evaluated round
    rounds_to_target: int | None = None
    total_mb: float = 0.0


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


class Callback:
    """Every hook does nothing; a callback overrides the ones it needs."""

    def on_train_begin(self, ctx: TrainingContext) -> None:
        """Before the first round of this invocation (a resumed run starts past round 0)."""

    def measure(self, ctx: TrainingContext, record: RoundRecord) -> None:
        """Add to ``record.metrics`` / ``record.progress``; the round is not yet the run's."""

    def after_round(self, ctx: TrainingContext, record: RoundRecord) -> None:
        """The round is now the run's state (``ctx.state``, ``ctx.progress``)."""

    def on_interrupt(self, ctx: TrainingContext) -> None:
        """Ctrl-C or SIGTERM: the round in flight is abandoned; the last finished one stands."""

    def on_train_end(self, ctx: TrainingContext) -> None:
        """After the last round (or the one a callback stopped at), still inside the engine's
        runtime."""

    def close(self) -> None:
        """Always, last (release what the callback holds)."""
