"""McMahan et al. 2017's CNN: conv5x5(32)-pool-conv5x5(64)-pool-fc512-softmax (1,663,370
parameters on MNIST's 28x28x1 digits and 10 classes)."""

from __future__ import annotations

from fedlab.models.base import MODELS, Takes, flat_size, takes


@MODELS.register("cnn")
@takes(Takes.image)
def cnn(input_shape: tuple[int, ...], num_classes: int):
    import tensorflow as tf

    if len(input_shape) != 3:
        raise ValueError(f"model=cnn needs images (height, width, channels), not {input_shape}")
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32),
            layers.Reshape(input_shape),
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
