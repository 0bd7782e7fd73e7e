"""The run's state to disk every ``checkpoint_every`` rounds, at the last round, where a run
stops at its target, and on Ctrl-C or SIGTERM (the last finished round), so that re-running the
command continues exactly (``fedlab.checkpoint``)."""

from __future__ import annotations

from pathlib import Path

from fedlab import checkpoint
from fedlab.callbacks.base import CALLBACKS, Callback


@CALLBACKS.register("checkpoint")
class CheckpointCallback(Callback):
    order = 90  # after tracking: a checkpoint never holds a round the tracker did not get

    def __init__(self, path: Path, key: str, every: int, rounds: int, client_states) -> None:
        self.path = path
        self.key = key
        self.every = every
        self.rounds = rounds
        self.client_states = client_states  # a ClientStateStore
        self.saved = -1

    @classmethod
    def create(cls, cfg, run) -> CheckpointCallback | None:
        every = run.cfg.checkpoint_every
        if not every:
            return None  # checkpoint_every=0: no checkpoints
        return cls(
            run.checkpoint_path, run.checkpoint_key, every, run.cfg.rounds, run.client_states
        )

    def on_train_begin(self, ctx) -> None:
        self.saved = ctx.progress.round

    def after_round(self, ctx, record) -> None:
        due = record.round % self.every == 0 or record.round == self.rounds or ctx.stop
        if due:
            self.save(ctx)

    def on_interrupt(self, ctx) -> None:
        if ctx.progress.round > self.saved:
            self.save(ctx)

    def save(self, ctx) -> None:
        reached = ctx.progress
        index = self.client_states.commit()
        checkpoint.save(
            self.path,
            checkpoint.Checkpoint(
                round=reached.round,
                state=ctx.engine.state_arrays(ctx.state),
                history=reached.history,
                rounds_to_target=reached.rounds_to_target,
                total_mb=reached.total_mb,
                run_id=ctx.tracker.run_id,
                config_key=self.key,
                client_states=index,
            ),
        )
        self.client_states.prune()
        self.saved = reached.round
