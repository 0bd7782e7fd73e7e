"""The loss and the accuracy every engine and the evaluation compute, in one place.

A model's logits have one more axis than its targets: ``(n, classes)`` against ``(n,)`` labels
(MNIST), or ``(n, positions, classes)`` against ``(n, positions)`` (Shakespeare's next character
at each of 80 positions). The loss of a batch is the mean softmax cross-entropy over its targets
and the accuracy counts the targets predicted right, both over every position of every example.
A dataset with ``pad_label`` (a sequence's padding past the end of a role's text) has targets
that are not there: they count in neither. Without one this is Keras'
``SparseCategoricalCrossentropy(from_logits=True)`` with its ``SUM_OVER_BATCH_SIZE`` reduction
and ``SparseCategoricalAccuracy``, op for op, which TFF's Keras model uses.
"""

from __future__ import annotations

import tensorflow as tf


def batch_loss(logits: tf.Tensor, y: tf.Tensor, size: tf.Tensor, pad_label: int | None):
    """``(loss, correct, targets)`` of one batch: the mean cross-entropy over its targets, how
    many of them the logits predict, and how many there are (``size`` examples without padding)."""
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y), tf.float32)
    if pad_label is None:
        # Keras' SUM_OVER_BATCH_SIZE reduction, which TFF's Keras model uses.
        loss = tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(size, tf.float32))
        return loss, tf.reduce_sum(hits), tf.cast(size, tf.float32)
    real = tf.cast(tf.not_equal(y, pad_label), tf.float32)
    targets = tf.reduce_sum(real)
    loss = tf.math.divide_no_nan(tf.reduce_sum(losses * real), targets)
    return loss, tf.reduce_sum(hits * real), targets


class MaskedSparseCategoricalCrossentropy(tf.keras.losses.Loss):
    """``batch_loss``'s loss as a Keras loss, for TFF's ``from_keras_model``."""

    def __init__(self, pad_label: int, name: str = "masked_sparse_categorical_crossentropy"):
        super().__init__(reduction=tf.keras.losses.Reduction.SUM, name=name)
        self.pad_label = pad_label

    def call(self, y_true, y_pred):
        y = tf.cast(y_true, tf.int32)
        return batch_loss(y_pred, y, tf.shape(y)[0], self.pad_label)[0]

    def get_config(self):
        return {**super().get_config(), "pad_label": self.pad_label}


class MaskedSparseCategoricalAccuracy(tf.keras.metrics.Mean):
    """The fraction of real targets predicted right. Named as Keras' sparse categorical
    accuracy, which it equals without padding, so that both engines report it by one name."""

    def __init__(self, pad_label: int, name: str = "sparse_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.pad_label = pad_label

    def update_state(self, y_true, y_pred, sample_weight=None):
        y = tf.cast(y_true, tf.int32)
        hits = tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int32), y), tf.float32)
        real = tf.cast(tf.not_equal(y, self.pad_label), tf.float32)
        return super().update_state(hits, sample_weight=real)

    def get_config(self):
        return {**super().get_config(), "pad_label": self.pad_label}


def keras_loss_and_metric(pad_label: int | None):
    """The Keras loss and accuracy metric for TFF's ``from_keras_model``."""
    if pad_label is None:
        return (
            tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            tf.keras.metrics.SparseCategoricalAccuracy(),
        )
    return MaskedSparseCategoricalCrossentropy(pad_label), MaskedSparseCategoricalAccuracy(
        pad_label
    )
