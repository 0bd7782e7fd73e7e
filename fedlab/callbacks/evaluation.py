"""The paper's metric after each round: the global model's test accuracy (``fedlab.evaluation``
computes it: centrally, or federatedly for datasets with a test split per client), at round 0,
every ``eval_every`` rounds and after the last; ``eval/accuracy`` and ``eval/best_accuracy``,
``eval/loss``, the federated spread (``eval/client_accuracy_*``) and ``time/eval_s``."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from fedlab.callbacks.base import CALLBACKS, Callback
from fedlab.logs import FILE_ONLY

log = logging.getLogger(__name__)


def _evaluate(evaluate, weights) -> tuple[float, float, dict[str, float]]:
    """Loss, accuracy and the other ``eval/`` metrics, with ``time/eval_s``: the evaluation's
    wall time (what ``eval_clients`` and ``eval_every`` trade against the curve's detail)."""
    started = time.perf_counter()
    out = evaluate(weights)
    loss, accuracy, extra = out if len(out) == 3 else (*out, {})
    return loss, accuracy, {**extra, "time/eval_s": time.perf_counter() - started}


# The artifact of a federatedly evaluated run: its last evaluation's accuracy of each client.
CLIENT_ACCURACY = "client_accuracy.json"


@CALLBACKS.register("evaluation")
class EvaluationCallback(Callback):
    """Evaluates the global model at round 0, every ``eval_every`` rounds and after the last.

    With a ``FederatedEvaluator``, the end of the run logs ``client_accuracy.json`` (the last
    evaluation's accuracy of each evaluated client, with its round) into ``output_dir`` and the
    tracker: the distribution that ``fedlab.report`` draws beside the curve."""

    def __init__(
        self, evaluator: Any, every: int, rounds: int, output_dir: Path | None = None
    ) -> None:
        self.evaluate = evaluator
        self.every = every
        self.rounds = rounds
        self.output_dir = output_dir
        self.evaluated_round: int | None = None

    @classmethod
    def create(cls, cfg, run) -> EvaluationCallback:
        """The global model on the dataset's test set, or on each client's test split (a
        seeded sample of ``eval_clients``) where the dataset has them."""
        from fedlab.evaluation import Evaluator, FederatedEvaluator

        data, model = run.dataset, run.parts.make_model()
        if data.test_clients is not None:
            evaluator = FederatedEvaluator(
                model,
                data.x_test,
                data.y_test,
                data.test_clients,
                data.pad_label,
                run.cfg.eval_clients,
                run.cfg.seed,
            )
        else:
            evaluator = Evaluator(model, data.x_test, data.y_test)
        return cls(evaluator, run.cfg.eval_every, run.cfg.rounds, run.output_dir)

    def on_train_begin(self, ctx) -> None:
        if ctx.progress.round == 0 and 0 not in ctx.progress.history:
            log.info("evaluating the initial model ...")
            loss, accuracy, extra = _evaluate(self.evaluate, ctx.engine.model_weights(ctx.state))
            log.info(
                "round 0: test accuracy %.4f, loss %.4f (evaluated in %.1f s)",
                accuracy,
                loss,
                extra["time/eval_s"],
            )
            ctx.progress = dataclasses.replace(ctx.progress, history={0: accuracy})
            ctx.tracker.log_metrics(
                {
                    "eval/loss": loss,
                    "eval/accuracy": accuracy,
                    "eval/best_accuracy": accuracy,
                    **extra,
                },
                step=0,
            )
            self.evaluated_round = 0

    def on_train_end(self, ctx) -> None:
        accuracy = getattr(self.evaluate, "client_accuracy", None)
        if accuracy is None or self.output_dir is None or self.evaluated_round is None:
            return  # a centralised test set, or nothing evaluated in this process
        path = self.output_dir / CLIENT_ACCURACY
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"round": self.evaluated_round, "accuracy": [float(a) for a in accuracy]}
        path.write_text(json.dumps(record))
        ctx.tracker.log_artifact(path)

    def measure(self, ctx, record) -> None:
        if record.round % self.every and record.round != self.rounds:
            return
        weights = ctx.engine.model_weights(record.output.state)
        loss, accuracy, extra = _evaluate(self.evaluate, weights)
        self.evaluated_round = record.round
        history = {**record.progress.history, record.round: accuracy}
        record.progress = dataclasses.replace(record.progress, history=history)
        log.info(
            "round %d: test accuracy %.4f, loss %.4f; train loss %.4f",
            record.round,
            accuracy,
            loss,
            record.output.train_loss,
            extra=FILE_ONLY,  # the console has the bar, or the progress lines
        )
        record.metrics.update(
            {
                "eval/loss": loss,
                "eval/accuracy": accuracy,
                "eval/best_accuracy": max(history.values()),
                **extra,
            }
        )
