"""The progress bar (tqdm): rounds done, the latest train loss and test accuracy.

``tqdm.auto``: a terminal's bar, or Jupyter's widget when the run is started from a notebook
(``fedlab.run``)."""

from __future__ import annotations

from tqdm.auto import tqdm

from fedlab.callbacks.base import CALLBACKS, Callback


@CALLBACKS.register("progress")
class ProgressCallback(Callback):
    order = 100  # last: the bar shows the round once it is recorded and checkpointed

    def __init__(self, description: str, total: int, enabled: bool) -> None:
        self.description = description
        self.total = total
        self.enabled = enabled
        self.bar = None

    @classmethod
    def create(cls, cfg, run) -> ProgressCallback:
        return cls(run.description, run.cfg.rounds, run.progress)

    def on_train_begin(self, ctx) -> None:
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
