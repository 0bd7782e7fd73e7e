"""McMahan et al. 2017's CIFAR model: the TensorFlow CIFAR-10 tutorial's CNN.

The paper (arXiv:1602.05629, Sec. 3, "CIFAR experiments"): "the model architecture was taken
from the TensorFlow tutorial, which consists of two convolutional layers followed by two fully
connected layers and then a linear transformation layer to produce logits, for a total of about
10^6 parameters", on images "preprocessed ... cropping the images to 24x24, randomly flipping
left-right and adjusting the contrast, brightness and whitening". The layers are the tutorial's
(tensorflow/models, ``tutorials/image/cifar10/cifar10.py``, ``inference``): conv 5x5, 64, ReLU;
max-pool 3x3 stride 2 SAME; local response normalisation (``tf.nn.lrn(depth_radius=4,
bias=1.0, alpha=0.001 / 9.0, beta=0.75)``); conv 5x5, 64, ReLU; LRN; max-pool 3x3/2; dense 384
ReLU; dense 192 ReLU; a linear layer to the logits.

What is kept and what is not:

* The 24x24 crop is a centre crop inside the model (Keras' ``CenterCrop``), the crop the
  tutorial evaluates with, and whitening is TensorFlow's ``per_image_standardization``, the
  tutorial's, for training and test alike. The random crops, flips, brightness and contrast of
  the training pipeline are left out: fedlab's engines train on fixed arrays, with no
  per-round augmentation.
* Parameters, for 24x24x3 input (SAME padding: 24 -> 12 -> 6 after the pools):
  conv1 5·5·3·64 + 64 = 4,864; conv2 5·5·64·64 + 64 = 102,464; fc384 (6·6·64)·384 + 384 =
  885,120; fc192 384·192 + 192 = 73,920; logits 192·C + C. For CIFAR-10 (C = 10): 1,068,298,
  the paper's "about 10^6"; for CIFAR-100: 1,085,668. Without the crop (32x32 input) the first
  dense layer alone would hold 1,573,248.
* Keras' default initialisers, not the tutorial's truncated normals, and no weight decay (the
  tutorial's 0.004 on the dense layers): fedlab's losses have no regularisation term.

``LocalResponseNormalization`` and ``PerImageStandardization`` are two small weightless Keras
layers around the TensorFlow ops; ``fedlab.backends.fast.functional`` has a converter for each
(the same ops), and TFF runs them as it runs any Keras layer.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from fedlab.models.base import MODELS, Takes, flat_size, takes

CROP = 24  # the paper's and the tutorial's 24x24 crop
# tf.nn.lrn's arguments in the tutorial's norm1 and norm2.
LRN = {"depth_radius": 4, "bias": 1.0, "alpha": 0.001 / 9.0, "beta": 0.75}


@functools.cache
def cifar_layers() -> SimpleNamespace:
    """The two custom layer classes (defined on first use: TensorFlow is imported only to build
    a model, tests/test_layout.py)."""
    import tensorflow as tf

    @tf.keras.utils.register_keras_serializable("fedlab")
    class LocalResponseNormalization(tf.keras.layers.Layer):
        """``tf.nn.local_response_normalization`` over the channels."""

        def __init__(self, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5, **kwargs):
            super().__init__(**kwargs)
            self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

        def call(self, inputs):
            return tf.nn.local_response_normalization(
                inputs, self.depth_radius, self.bias, self.alpha, self.beta
            )

        def get_config(self):
            return {
                **super().get_config(),
                "depth_radius": self.depth_radius,
                "bias": self.bias,
                "alpha": self.alpha,
                "beta": self.beta,
            }

    @tf.keras.utils.register_keras_serializable("fedlab")
    class PerImageStandardization(tf.keras.layers.Layer):
        """``tf.image.per_image_standardization``: each image to mean 0, variance 1."""

        def call(self, inputs):
            return tf.image.per_image_standardization(inputs)

    return SimpleNamespace(
        LocalResponseNormalization=LocalResponseNormalization,
        PerImageStandardization=PerImageStandardization,
    )


@MODELS.register("cifar_cnn")
@takes(Takes.image)
def cifar_cnn(input_shape: tuple[int, ...], num_classes: int):
    import tensorflow as tf

    if len(input_shape) != 3 or min(input_shape[:2]) < CROP:
        raise ValueError(
            f"model=cifar_cnn needs images of at least {CROP}x{CROP} (height, width, channels), "
            f"not {input_shape}"
        )
    layers, custom = tf.keras.layers, cifar_layers()
    return tf.keras.Sequential(
        [
            layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32),
            layers.Reshape(input_shape),
            layers.CenterCrop(CROP, CROP),
            custom.PerImageStandardization(),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPool2D(3, strides=2, padding="same"),
            custom.LocalResponseNormalization(**LRN),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            custom.LocalResponseNormalization(**LRN),
            layers.MaxPool2D(3, strides=2, padding="same"),
            layers.Flatten(),
            layers.Dense(384, activation="relu"),
            layers.Dense(192, activation="relu"),
            layers.Dense(num_classes),
        ],
        name="cifar_cnn",
    )
