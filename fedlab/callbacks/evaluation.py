"""The paper's metric: accuracy of the global model on the dataset's test set.

The seed notebook logged only training metrics; fedlab evaluates the global model every
``eval_every`` rounds, in this process (the weights are here after each round anyway).

Not ``keras.Model.evaluate``: once TFF has traced Keras models inside its own graphs, Keras
refuses to run its training loops on models built outside them ("Your Layer or Model is in an
invalid state"). A forward pass in a ``tf.function`` has no such state and is faster.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from fedlab.callbacks.base import Callback


class Evaluator:
    """Test loss and accuracy of a set of global weights."""

    def __init__(
        self, model: tf.keras.Model, x_test: np.ndarray, y_test: np.ndarray, batch_size: int = 250
    ) -> None:
        self.model = model
        self._batches = [
            (tf.constant(x_test[i : i + batch_size]), tf.constant(y_test[i : i + batch_size]))
            for i in range(0, len(x_test), batch_size)
        ]
        self._num_examples = len(x_test)

        @tf.function
        def batch_sums(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            logits = self.model(x, training=False)
            losses = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            correct = tf.equal(tf.argmax(logits, axis=-1, output_type=y.dtype), y)
            return tf.reduce_sum(losses), tf.reduce_sum(tf.cast(correct, tf.float32))

        self._batch_sums = batch_sums
        self._pool = ThreadPoolExecutor(max_workers=max(len(os.sched_getaffinity(0)), 1))

    def __call__(self, weights: list[np.ndarray]) -> tuple[float, float]:
        self.model.set_weights(weights)
        # The batches on threads, one per core: with engine=fast TensorFlow runs each op on one
        # thread (fedlab.hardware), and evaluating 10,000 images costs half a round's training of
        # the CNN. Small batches keep a batch's activations in cache: the CNN on the 2-core CPU
        # took 2.6 s with batches of 250 (also of 100), 3.1 s of 500 and 3.7 s of 2,000.
        # Sums in batch order, so the result does not depend on timing.
        sums = list(self._pool.map(lambda batch: self._batch_sums(*batch), self._batches))
        loss_sum = sum(float(loss) for loss, _ in sums)
        correct = sum(float(right) for _, right in sums)
        return loss_sum / self._num_examples, correct / self._num_examples


class EvaluationCallback(Callback):
    """Evaluates the global model at round 0, every ``eval_every`` rounds and after the last."""

    def __init__(self, evaluator: Evaluator, every: int, rounds: int) -> None:
        self.evaluate = evaluator
        self.every = every
        self.rounds = rounds

    def on_train_begin(self, ctx) -> None:
        if ctx.progress.round == 0 and 0 not in ctx.progress.history:
            loss, accuracy = self.evaluate(ctx.engine.model_weights(ctx.state))
            ctx.progress = dataclasses.replace(ctx.progress, history={0: accuracy})
            ctx.tracker.log_metrics(
                {"eval/loss": loss, "eval/accuracy": accuracy, "eval/best_accuracy": accuracy},
                step=0,
            )

    def measure(self, ctx, record) -> None:
        if record.round % self.every and record.round != self.rounds:
            return
        loss, accuracy = self.evaluate(ctx.engine.model_weights(record.output.state))
        history = {**record.progress.history, record.round: accuracy}
        record.progress = dataclasses.replace(record.progress, history=history)
        record.metrics.update(
            {
                "eval/loss": loss,
                "eval/accuracy": accuracy,
                "eval/best_accuracy": max(history.values()),
            }
        )
