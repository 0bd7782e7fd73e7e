"""Multinomial logistic regression (7,850 parameters on MNIST)."""

from __future__ import annotations

from fedlab.models.base import MODELS, Takes, flat_size, takes


@MODELS.register("logreg")
@takes(Takes.features)
def logreg(input_shape: tuple[int, ...], num_classes: int):
    import tensorflow as tf

    return tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32),
            tf.keras.layers.Dense(num_classes),
        ],
        name="logreg",
    )
