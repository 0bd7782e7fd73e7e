"""A callback of one's own: the round whose test accuracy is the best so far, logged as
``custom/best_round`` (it adds a metric in ``measure``, so fedlab's tracking logs it)."""

from __future__ import annotations

from dataclasses import dataclass

from fedlab.callbacks import Callback, CallbackConfig


@dataclass
class BestRoundConfig(CallbackConfig):
    metric: str = "custom/best_round"


class BestRound(Callback):
    Config = BestRoundConfig

    def measure(self, ctx, record) -> None:
        history = record.progress.history  # test accuracy by evaluated round
        if history:
            record.metrics[self.cfg.metric] = max(history, key=lambda r: (history[r], -r))
