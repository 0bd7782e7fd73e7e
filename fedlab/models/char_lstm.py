"""McMahan et al. 2017's character LSTM for Shakespeare: an 8-dimensional embedding of each
character, two LSTM layers of 256 units, and a softmax over the characters at every position
(the paper's unroll length is the window, 80 characters).

The paper counts 866,578 parameters without giving its vocabulary. Here the vocabulary is TFF's
(90 ids: 86 characters, padding, out-of-vocabulary, begin, end), and the count is
``8V + 4·256·(8+256+1) + 4·256·(256+256+1) + 257V = 796,672 + 265V`` = 820,522 for V = 90. No
integer V gives the paper's number with one bias per gate (866,578 - 796,672 = 69,906 = 265 ×
263.8); with cuDNN's two biases per gate (+2,048) it would be V = 256.07, close to a byte
vocabulary of 256, which is likely what the paper used.

The paper does not say how its weights were initialised. ``initializer`` picks the starting
weights only (the model computes the same either way):

- ``keras`` (the default): Keras 2.14's defaults. The embedding is uniform in ±0.05, the LSTM's
  input kernel is Glorot-uniform, its recurrent kernel orthogonal, the forget gate's bias 1.
- ``tf1``: what TensorFlow 1.x, the paper's, gave a model built with no initializer named. Every
  variable is Glorot-uniform, the embedding too (±0.25 for 90 ids, five times Keras' range). An
  LSTM cell keeps its input and recurrent kernels as one matrix ([input + 256, 1024]), so both
  are uniform in ±sqrt(6 / (input + 256 + 1024)). Biases are zero, and the cell adds 1 to the
  forget gate, which is Keras' forget-gate bias of 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from fedlab.models.base import MODELS, ModelConfig, Takes, configured, flat_size, takes

UNITS = 256


class Initializer(StrEnum):
    keras = "keras"
    tf1 = "tf1"


@dataclass
class CharLstmConfig(ModelConfig):
    initializer: Initializer = Initializer.keras  # the starting weights: keras | tf1


@MODELS.register("char_lstm")
@takes(Takes.sequence)
@configured(CharLstmConfig)
def char_lstm(input_shape: tuple[int, ...], num_classes: int, initializer: str = Initializer.keras):
    import tensorflow as tf

    if len(input_shape) != 1:
        raise ValueError(f"model=char_lstm needs sequences of character ids, not {input_shape}")
    layers = tf.keras.layers
    embedding, first, second = {}, {}, {}
    if Initializer(initializer) == Initializer.tf1:
        embedding = {"embeddings_initializer": "glorot_uniform"}
        for options, inputs in ((first, 8), (second, UNITS)):
            limit = math.sqrt(6 / (inputs + UNITS + 4 * UNITS))
            uniform = tf.keras.initializers.RandomUniform(-limit, limit)
            options.update(kernel_initializer=uniform, recurrent_initializer=uniform)
    return tf.keras.Sequential(
        [
            # fedlab's examples are float32; Embedding casts the ids to int32 as Keras does.
            layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32),
            layers.Embedding(num_classes, 8, **embedding),
            layers.LSTM(UNITS, return_sequences=True, **first),
            layers.LSTM(UNITS, return_sequences=True, **second),
            layers.Dense(num_classes),
        ],
        name="char_lstm",
    )
