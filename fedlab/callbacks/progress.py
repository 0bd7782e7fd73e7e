"""How far a run is: tqdm's bar in a terminal, log lines everywhere else.

In a terminal (and in Jupyter, ``tqdm.auto``'s widget, for ``fedlab.run``) the bar shows the
rounds done, the latest train loss and test accuracy. Where there is no terminal to draw a bar in
(a pipe, ``nohup``, a SLURM job's output), the callback logs a line (``fedlab.logs``) after the
first round, then whenever ``log_every_s`` seconds or ``log_every_rounds`` rounds have passed
since the last one, whichever comes first, and after the last round: the round, the latest train
loss and test accuracy, the time a round takes and the time left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from fedlab.callbacks.base import CALLBACKS, Callback, CallbackConfig
from fedlab.errors import ConfigError
from fedlab.logs import duration

log = logging.getLogger(__name__)


@dataclass
class ProgressConfig(CallbackConfig):
    log_every_s: float | None = 60.0  # without a terminal: a line at least this often
    log_every_rounds: int | None = None  # ... and at least every this many rounds

    def validate(self, group: str) -> None:
        if self.log_every_s is not None and self.log_every_s < 0:
            raise ConfigError(
                f"{group}.log_every_s={self.log_every_s} is invalid; allowed: null or >= 0"
            )
        if self.log_every_rounds is not None and self.log_every_rounds < 1:
            raise ConfigError(
                f"{group}.log_every_rounds={self.log_every_rounds} is invalid; allowed: null or "
                "an integer >= 1"
            )


@CALLBACKS.register("progress")
class ProgressCallback(Callback):
    Config = ProgressConfig
    order = 100  # last: the bar shows the round once it is recorded and checkpointed

    def __init__(
        self,
        description: str,
        total: int,
        enabled: bool,
        log_every_s: float | None = 60.0,
        log_every_rounds: int | None = None,
    ) -> None:
        self.description = description
        self.total = total
        self.enabled = enabled  # the bar; log lines when it is off
        self.log_every_s = log_every_s
        self.log_every_rounds = log_every_rounds
        self.bar = None
        self._last_line = (0.0, 0)  # when, and at which round, the last line was logged
        self._first = (0.0, 0)  # when this invocation's rounds started, and from which round

    @classmethod
    def create(cls, cfg, run) -> ProgressCallback:
        return cls(
            run.description, run.cfg.rounds, run.progress, cfg.log_every_s, cfg.log_every_rounds
        )

    def on_train_begin(self, ctx) -> None:
        now = time.monotonic()
        self._first = self._last_line = (now, ctx.progress.round)
        if not self.enabled and ctx.progress.round < self.total:
            log.info(
                "training rounds %d to %d (%d clients a round) ...",
                ctx.progress.round + 1,
                self.total,
                ctx.cfg.clients_per_round,
            )
        self.bar = tqdm(
            desc=self.description,
            unit="round",
            initial=ctx.progress.round,
            total=self.total,
            disable=not self.enabled,
            dynamic_ncols=True,
        )

    def after_round(self, ctx, record) -> None:
        history = ctx.progress.history
        self.bar.set_postfix(
            loss=f"{record.output.train_loss:.4f}",
            test_acc=f"{history[max(history)]:.4f}",
            refresh=False,
        )
        self.bar.update(1)
        if not self.enabled and self._due(record.round, ctx.stop):
            self._log_line(ctx, record)

    def _due(self, round_num: int, stopping: bool) -> bool:
        since, at = self._last_line
        first_round = round_num == self._first[1] + 1
        by_time = self.log_every_s is not None and time.monotonic() - since >= self.log_every_s
        by_rounds = self.log_every_rounds is not None and round_num - at >= self.log_every_rounds
        return first_round or round_num >= self.total or stopping or by_time or by_rounds

    def _log_line(self, ctx, record) -> None:
        now = time.monotonic()
        started, first = self._first
        per_round = (now - started) / max(1, record.round - first)
        history = ctx.progress.history
        evaluated = max(history)
        left = max(0, self.total - record.round)
        log.info(
            "round %d/%d: train loss %.4f, test accuracy %.4f (round %d); %.2f s a round%s",
            record.round,
            self.total,
            record.output.train_loss,
            history[evaluated],
            evaluated,
            per_round,
            f", about {duration(per_round * left)} left" if left and not ctx.stop else "",
        )
        self._last_line = (now, record.round)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
