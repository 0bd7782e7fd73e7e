"""Keras model builders for the models of McMahan et al. 2017 (Section 3, "Experimental setup").

Every model takes flattened 784-pixel images (fedlab keeps MNIST as (n, 784) float32) and outputs
10 logits; the softmax lives in the loss (``from_logits=True``), which is the numerically stable
form of the paper's softmax output layer and has the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

INPUT_DIM = 784
NUM_CLASSES = 10


def cnn(num_classes: int = NUM_CLASSES) -> tf.keras.Model:
    """conv5x5(32)-pool-conv5x5(64)-pool-fc512-softmax: 1,663,370 parameters."""
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input(shape=(INPUT_DIM,), dtype=tf.float32),
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, 5, padding="same", activation="relu"),
            layers.MaxPool2D(2, padding="same"),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPool2D(2, padding="same"),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dense(num_classes),
        ],
        name="cnn",
    )


def two_nn(num_classes: int = NUM_CLASSES) -> tf.keras.Model:
    """The paper's 2NN: two hidden layers of 200 ReLU units, 199,210 parameters."""
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input(shape=(INPUT_DIM,), dtype=tf.float32),
            layers.Dense(200, activation="relu"),
            layers.Dense(200, activation="relu"),
            layers.Dense(num_classes),
        ],
        name="2nn",
    )


def logreg(num_classes: int = NUM_CLASSES) -> tf.keras.Model:
    """Multinomial logistic regression: 7,850 parameters."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=(INPUT_DIM,), dtype=tf.float32),
            tf.keras.layers.Dense(num_classes),
        ],
        name="logreg",
    )


BUILDERS: dict[str, Callable[..., tf.keras.Model]] = {"cnn": cnn, "2nn": two_nn, "logreg": logreg}


def build_model(name: str, num_classes: int = NUM_CLASSES) -> tf.keras.Model:
    """A fresh, uncompiled Keras model by its config name (``cnn``, ``2nn``, ``logreg``)."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"model={name!r} is unknown; allowed: {', '.join(BUILDERS)}") from None
    return builder(num_classes)
