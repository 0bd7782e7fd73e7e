"""McMahan et al. 2017's character LSTM for Shakespeare: an 8-dimensional embedding of each
character, two LSTM layers of 256 units, and a softmax over the characters at every position
(the paper's unroll length is the window, 80 characters).

The paper counts 866,578 parameters without giving its vocabulary. Here the vocabulary is TFF's
(90 ids: 86 characters, padding, out-of-vocabulary, begin, end), and the count is
``8V + 4·256·(8+256+1) + 4·256·(256+256+1) + 257V = 796,672 + 265V`` = 820,522 for V = 90. No
integer V gives the paper's number with one bias per gate (866,578 - 796,672 = 69,906 = 265 ×
263.8); with cuDNN's two biases per gate (+2,048) it would be V = 256.07, close to a byte
vocabulary of 256, which is likely what the paper used.
"""

from __future__ import annotations

from fedlab.models.base import MODELS, Takes, flat_size, takes


@MODELS.register("char_lstm")
@takes(Takes.sequence)
def char_lstm(input_shape: tuple[int, ...], num_classes: int):
    import tensorflow as tf

    if len(input_shape) != 1:
        raise ValueError(f"model=char_lstm needs sequences of character ids, not {input_shape}")
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            # fedlab's examples are float32; Embedding casts the ids to int32 as Keras does.
            layers.Input(shape=(flat_size(input_shape),), dtype=tf.float32),
            layers.Embedding(num_classes, 8),
            layers.LSTM(256, return_sequences=True),
            layers.LSTM(256, return_sequences=True),
            layers.Dense(num_classes),
        ],
        name="char_lstm",
    )
