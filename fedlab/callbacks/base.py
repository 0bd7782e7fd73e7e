"""The callback interface and what it is given (``fedlab.core.types``: the run as the round
loop passes it)."""

from __future__ import annotations

from fedlab.core.types import Progress, RoundRecord, TrainingContext

__all__ = ["Callback", "Progress", "RoundRecord", "TrainingContext"]


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
