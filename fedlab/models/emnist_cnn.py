"""The EMNIST CNN of Reddi et al. 2020 ("Adaptive Federated Optimization", arXiv:2003.00295,
Table 5 of Appendix B, EMNIST CR): conv3x3(32)-relu, conv3x3(64)-relu, maxpool 2x2,
dropout 0.25, flatten, dense 128-relu, dropout 0.5, dense over the classes; the layers and sizes
of TFF 0.87's ``simulation/baselines/emnist/emnist_models.py`` ``create_conv_dropout_model``
(valid padding, Glorot-uniform kernels, as Keras' defaults).

Parameters: 320 + 18,496 + 1,179,776 + 129·C, that is 1,206,590 for EMNIST's 62 classes and
1,199,882 for its 10 digits (TFF's docstring's count for ``only_digits=True``).

``dropout: false`` keeps both Dropout layers with rate 0 (the identity), so that the weights and
the computation are otherwise the same: that is how its engine=fast and engine=tff runs are
compared, since TFF's Keras dropout draws from a generator fedlab does not control.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlab.models.base import MODELS, ModelConfig, Takes, configured, flat_size, takes

# Reddi et al. 2020, Table 5 (TFF's create_conv_dropout_model): after the pooling, after fc128.
DROPOUT_RATES = (0.25, 0.5)


@dataclass
class EmnistCnnConfig(ModelConfig):
    dropout: bool = True  # the paper's rates 0.25 and 0.5; false: rate 0 (no dropout)


@MODELS.register("emnist_cnn")
@takes(Takes.image)
@configured(EmnistCnnConfig)
def emnist_cnn(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True):
    import tensorflow as tf

    if len(input_shape) != 3 or min(input_shape[:2]) < 6:
        raise ValueError(
            f"model=emnist_cnn needs images (height, width, channels) of at least 6x6, "
            f"not {input_shape}"
        )
    conv_rate, dense_rate = DROPOUT_RATES if dropout else (0.0, 0.0)
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32),
            layers.Reshape(input_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPool2D(2),
            layers.Dropout(conv_rate),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(dense_rate),
            layers.Dense(num_classes),
        ],
        name="emnist_cnn",
    )
