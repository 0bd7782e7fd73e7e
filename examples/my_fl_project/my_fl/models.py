"""A model of one's own: a builder function ``(input_shape, num_classes) -> keras.Model`` whose
input is the flattened example and whose output is one logit per class. TensorFlow is imported
inside it, so that composing a config stays fast."""

from __future__ import annotations

import math


def tiny_mlp(input_shape: tuple[int, ...], num_classes: int):
    import tensorflow as tf

    return tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=(math.prod(input_shape),)),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(num_classes),
        ],
        name="tiny_mlp",
    )
