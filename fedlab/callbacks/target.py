"""Rounds to the target accuracy (the paper's Tables 1 and 2), stopping there if asked, and the
round's wall time."""

from __future__ import annotations

import dataclasses
import time

from fedlab.callbacks.base import CALLBACKS, Callback


@CALLBACKS.register("target")
class TargetCallback(Callback):
    """``rounds_to_target``: the first evaluated round whose test accuracy reaches the target
    (exact with ``eval_every=1``, else an upper bound); ``stop_at_target`` ends the run there."""

    def __init__(self, target: float, stop_at_target: bool) -> None:
        self.target = target
        self.stop_at_target = stop_at_target

    @classmethod
    def create(cls, cfg, run) -> TargetCallback:
        return cls(run.cfg.target_accuracy, run.cfg.stop_at_target)

    def measure(self, ctx, record) -> None:
        progress = record.progress
        accuracy = progress.history.get(record.round)
        if progress.rounds_to_target is None and accuracy is not None and accuracy >= self.target:
            record.progress = dataclasses.replace(progress, rounds_to_target=record.round)
            record.metrics["rounds_to_target"] = record.round

    def after_round(self, ctx, record) -> None:
        if self.stop_at_target and ctx.progress.rounds_to_target is not None:
            ctx.stop = True


@CALLBACKS.register("timing")
class TimingCallback(Callback):
    """``time/round_s``: from the round's start to here (training and evaluation); keep it after
    every measuring callback but the tracking one."""

    order = 70  # after the callbacks that measure (a user's too), before tracking logs it

    def measure(self, ctx, record) -> None:
        record.metrics["time/round_s"] = time.monotonic() - record.started
