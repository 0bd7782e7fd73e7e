"""McMahan et al. 2017's 2NN: two hidden layers of 200 ReLU units (199,210 parameters on MNIST)."""

from __future__ import annotations

from fedlab.models.base import MODELS, Takes, flat_size, takes


@MODELS.register("2nn")
@takes(Takes.features)
def two_nn(input_shape: tuple[int, ...], num_classes: int):
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32),
            layers.Dense(200, activation="relu"),
            layers.Dense(200, activation="relu"),
            layers.Dense(num_classes),
        ],
        name="2nn",
    )
