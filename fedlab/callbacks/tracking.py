"""The round's metrics to the tracker, and the run's figure (every metric against rounds and
MB, ``fedlab.plots``) and final model at the end."""

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

    def __init__(
        self,
        tracker,
        logged_up_to: int,
        output_dir: Path,
        make_model,
        log_model: bool,
        figure: bool = True,
    ):
        self.tracker = tracker
        self.logged_up_to = logged_up_to
        self.output_dir = output_dir
        self.make_model = make_model
        self.log_model = log_model
        self.figure = figure
        self.seen: dict[int, dict[str, float]] = {}  # this process's rounds, for the figure

    def _history(self, ctx) -> dict[str, list[tuple[int, float]]]:
        """Every metric of the whole run, by round: what the store holds (earlier invocations
        of a resumed run) with what this process logged (``fedlab.experiment.MetricLog``); a
        tracker that keeps nothing gives this process's rounds and the test accuracy."""
        history = getattr(self.tracker, "history", None)
        if callable(history):
            return history(self.tracker.run_id)
        series: dict[str, dict[int, float]] = {}
        for round_num, metrics in self.seen.items():
            for key, value in metrics.items():
                series.setdefault(key, {})[round_num] = value
        series["eval/accuracy"] = dict(ctx.progress.history)
        return {key: sorted(points.items()) for key, points in series.items()}

    @classmethod
    def create(cls, cfg, run) -> TrackingCallback:
        return cls(
            run.tracker,
            run.logged_up_to,
            run.output_dir,
            run.parts.make_model,
            run.cfg.tracking.log_model,
            # tracking=none prints the metrics only: no figure (drawing one takes about a
            # second, which every quick check and test run would pay).
            figure=run.cfg.tracking.backend != "none",
        )

    def measure(self, ctx, record) -> None:
        self.seen.setdefault(record.round, {}).update(record.metrics)
        if record.round > self.logged_up_to:
            self.tracker.log_metrics(record.metrics, step=record.round)

    def on_train_end(self, ctx) -> None:
        from fedlab.plots import FIGURE, plot_run

        if self.figure:
            path = self.output_dir / FIGURE
            self.tracker.log_artifact(plot_run(self._history(ctx), ctx.cfg.target_accuracy, path))
        if self.log_model:
            model = self.make_model()
            model.set_weights(ctx.engine.model_weights(ctx.state))
            path = self.output_dir / "model.keras"
            model.save(path)
            self.tracker.log_artifact(path)
