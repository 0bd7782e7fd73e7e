"""``eval/backdoor_accuracy``: how well a backdoor attack (``fedlab.attacks.backdoor``) has
planted itself in the global model: the share of the test images not already of the target
class that the model, with the trigger stamped on them, puts in the target class. Measured on the
evaluation's schedule (round 0, every ``eval_every`` rounds and the last), only in a run whose
attack plants a backdoor."""

from __future__ import annotations

from fedlab.callbacks.base import CALLBACKS, Callback


@CALLBACKS.register("backdoor")
class BackdoorCallback(Callback):
    def __init__(self, evaluate, every: int, rounds: int) -> None:
        self.evaluate = evaluate
        self.every = every
        self.rounds = rounds

    @classmethod
    def create(cls, cfg, run) -> BackdoorCallback | None:
        attack = run.parts.attack
        if attack is None or not (attack.backdoor and attack.active):
            return None
        from fedlab.evaluation import Evaluator

        x, y = attack.triggered(run.dataset.x_test, run.dataset.y_test)
        return cls(Evaluator(run.parts.make_model(), x, y), run.cfg.eval_every, run.cfg.rounds)

    def _measure(self, ctx, state) -> dict[str, float]:
        _, accuracy = self.evaluate(ctx.engine.model_weights(state))
        return {"eval/backdoor_accuracy": accuracy}

    def on_train_begin(self, ctx) -> None:
        if ctx.progress.round == 0:
            ctx.tracker.log_metrics(self._measure(ctx, ctx.state), step=0)

    def measure(self, ctx, record) -> None:
        if record.round % self.every and record.round != self.rounds:
            return
        record.metrics.update(self._measure(ctx, record.output.state))
