"""The paper's metric: accuracy of the global model on the dataset's test set.

A dataset with clients of its own (Shakespeare) has a test split per client and is evaluated
federatedly, as TFF's ``build_fed_eval`` does (``FederatedEvaluator``): the global model on each
evaluated client's test split; ``eval/accuracy`` is then the accuracy pooled over all their
targets, and ``eval/client_accuracy_{mean,p10,p50,p90}`` its distribution over the clients. A
fixed, seeded sample of ``eval_clients`` clients (the same every round) keeps the cost bounded.

The seed notebook logged only training metrics; fedlab evaluates the global model every
``eval_every`` rounds, in this process (the weights are here after each round anyway).

Not ``keras.Model.evaluate``: once TFF has traced Keras models inside its own graphs, Keras
refuses to run its training loops on models built outside them ("Your Layer or Model is in an
invalid state"). A forward pass in a ``tf.function`` has no such state and is faster.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from fedlab import streams


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


def example_sums(model: tf.keras.Model, pad_label: int | None):
    """A ``tf.function`` of a batch: per example, its summed loss over its targets, its targets
    predicted right, and its targets (those not ``pad_label``)."""

    @tf.function
    def sums(x: tf.Tensor, y: tf.Tensor):
        logits = model(x, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=y.dtype), y), tf.float32)
        real = (
            tf.ones_like(hits)
            if pad_label is None
            else tf.cast(tf.not_equal(y, pad_label), tf.float32)
        )
        axes = list(range(1, len(y.shape)))
        if not axes:
            return losses, hits, real
        return (
            tf.reduce_sum(losses * real, axes),
            tf.reduce_sum(hits * real, axes),
            tf.reduce_sum(real, axes),
        )

    return sums


class FederatedEvaluator:
    """The global model on each evaluated client's test split.

    ``sample``: how many of the clients to evaluate (a seeded subset fixed for the run; None or
    more than there are: all). ``pad_label`` marks targets that are not there.
    """

    def __init__(
        self,
        model: tf.keras.Model,
        x_test: np.ndarray,
        y_test: np.ndarray,
        test_clients: list[np.ndarray],
        pad_label: int | None,
        sample: int | None,
        seed: int,
        batch_size: int = 250,
    ) -> None:
        self.model = model
        total = len(test_clients)
        if sample is None or sample >= total:
            chosen = np.arange(total)
        else:
            rng = streams.evaluation(seed)
            chosen = np.sort(rng.choice(total, sample, replace=False))
        self.clients = chosen
        idx = np.concatenate([test_clients[i] for i in chosen])
        self._owner = np.repeat(np.arange(len(chosen)), [len(test_clients[i]) for i in chosen])
        self._batches = [
            (tf.constant(x_test[part]), tf.constant(y_test[part]))
            for part in (idx[i : i + batch_size] for i in range(0, len(idx), batch_size))
        ]
        self.num_examples = len(idx)
        self._example_sums = example_sums(model, pad_label)
        self._pool = ThreadPoolExecutor(max_workers=max(len(os.sched_getaffinity(0)), 1))
        # The latest evaluation's accuracy of each evaluated client with a target (in the order
        # of ``clients``): written at the end of the run for the report's distribution figure.
        self.client_accuracy: np.ndarray | None = None

    def __call__(self, weights: list[np.ndarray]) -> tuple[float, float, dict[str, float]]:
        self.model.set_weights(weights)
        sums = list(self._pool.map(lambda batch: self._example_sums(*batch), self._batches))
        loss, right, targets = (
            np.concatenate([s[i].numpy() for s in sums]).astype(np.float64) for i in range(3)
        )
        k = len(self.clients)
        per_right = np.bincount(self._owner, right, minlength=k)
        per_targets = np.bincount(self._owner, targets, minlength=k)
        has = per_targets > 0
        client_accuracy = per_right[has] / per_targets[has]
        self.client_accuracy = client_accuracy
        pooled = right.sum() / max(targets.sum(), 1.0)
        p10, p50, p90 = np.percentile(client_accuracy, [10, 50, 90])
        return (
            float(loss.sum() / max(targets.sum(), 1.0)),
            float(pooled),
            {
                "eval/client_accuracy_mean": float(client_accuracy.mean()),
                "eval/client_accuracy_p10": float(p10),
                "eval/client_accuracy_p50": float(p50),
                "eval/client_accuracy_p90": float(p90),
                "eval/clients": float(k),
            },
        )


class PersonalizedEvaluator:
    """A model on each of a fixed set of clients' own test data, one client at a time: each
    client's own model (``fedlab.callbacks.personalized``), or the global model on every one.

    ``client_examples[i]``: the indices into ``x`` / ``y`` of the ``i``-th client's test
    examples (its test split, or the training examples it holds out). ``pad_label`` marks
    targets that are not there.
    """

    def __init__(
        self,
        model: tf.keras.Model,
        x: np.ndarray,
        y: np.ndarray,
        client_examples: list[np.ndarray],
        pad_label: int | None,
        batch_size: int = 250,
    ) -> None:
        self.model = model
        self._batches = [
            [
                (tf.constant(x[part]), tf.constant(y[part]))
                for part in (idx[i : i + batch_size] for i in range(0, len(idx), batch_size))
            ]
            for idx in (np.asarray(e) for e in client_examples)
        ]
        self.num_examples = sum(len(e) for e in client_examples)
        self._example_sums = example_sums(model, pad_label)
        self._pool = ThreadPoolExecutor(max_workers=max(len(os.sched_getaffinity(0)), 1))

    def __call__(self, weights: list[np.ndarray], clients: list[int] | None = None) -> np.ndarray:
        """Per client of ``clients`` (positions in ``client_examples``; None: all), the model
        with ``weights``'s loss summed over the client's targets, its targets predicted right,
        and its targets: a ``(len(clients), 3)`` float64 array."""
        self.model.set_weights(weights)
        which = range(len(self._batches)) if clients is None else clients
        out = np.zeros((len(which), 3))
        for row, i in enumerate(which):
            # The client's batches on threads, summed in batch order (independent of timing).
            for sums in self._pool.map(lambda batch: self._example_sums(*batch), self._batches[i]):
                out[row] += [float(np.sum(s.numpy(), dtype=np.float64)) for s in sums]
        return out
