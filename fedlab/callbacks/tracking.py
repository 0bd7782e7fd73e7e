"""The round's metrics to the tracker, and the run's figure and final model at the end."""

from __future__ import annotations

from pathlib import Path

from fedlab.callbacks.base import CALLBACKS, Callback


@CALLBACKS.register("tracking")
class TrackingCallback(Callback):
    """Logs each round once: rounds up to ``logged_up_to`` are already in the tracker (a run
    killed after logging a round but before checkpointing it recomputes it, identically).

    It logs in ``measure``, the last callback to measure, so before the round becomes the run's
    state: an interrupt while logging leaves the round uncommitted, the checkpoint keeps the
    round before, and a re-run recomputes this one (logging it only if it did not get through).
    Logging after the commit would let a checkpoint hold a round the tracker never received."""

    order = 80  # the last to measure: it logs what the others measured

    def __init__(self, tracker, logged_up_to: int, output_dir: Path, make_model, log_model: bool):
        self.tracker = tracker
        self.logged_up_to = logged_up_to
        self.output_dir = output_dir
        self.make_model = make_model
        self.log_model = log_model

    @classmethod
    def create(cls, cfg, run) -> TrackingCallback:
        return cls(
            run.tracker,
            run.logged_up_to,
            run.output_dir,
            run.parts.make_model,
            run.cfg.tracking.log_model,
        )

    def measure(self, ctx, record) -> None:
        if record.round > self.logged_up_to:
            self.tracker.log_metrics(record.metrics, step=record.round)

    def on_train_end(self, ctx) -> None:
        from fedlab.plots import plot_accuracy

        history = ctx.progress.history
        plot = plot_accuracy(
            history, ctx.cfg.target_accuracy, self.output_dir / "test_accuracy.png"
        )
        self.tracker.log_artifact(plot)
        if self.log_model:
            model = self.make_model()
            model.set_weights(ctx.engine.model_weights(ctx.state))
            path = self.output_dir / "model.keras"
            model.save(path)
            self.tracker.log_artifact(path)
