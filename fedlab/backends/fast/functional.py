"""fedlab's Keras models as pure functions of their weights, for training without variables.

The layers of a Keras model (``fedlab.models``) are read once and turned into the TensorFlow ops
Keras 2.14 runs for them (``Conv2D``: ``tf.nn.convolution`` + ``bias_add``; ``Dense``: ``matmul`` +
``bias_add``; ``MaxPool2D``: ``max_pool2d``), taking the weights as tensors in Keras order. With
the weights as plain tensors, a client's whole local training is one ``tf.while_loop`` carrying
them, and two clients can train at the same time without sharing a variable.

The forward pass is Keras' op for op. Two gradients are computed another way than TensorFlow's
default, because they were measurably faster on this CPU and give the same numbers up to float32
round-off: a dense layer's input gradient (``_matmul``) and a convolution's kernel gradient
(``conv2d``); a first convolution's input gradient, which nothing uses, is not computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

Forward = Callable[[list[tf.Tensor], tf.Tensor], tf.Tensor]


@dataclass(frozen=True)
class FunctionalModel:
    """``forward(weights, x) -> logits``; ``shapes`` and ``num_trainable`` in Keras order."""

    name: str
    forward: Forward
    shapes: tuple[tuple[int, ...], ...]
    num_trainable: int
    forward_macs: int  # multiply-accumulates of one example's forward pass

    @property
    def training_flops_per_example(self) -> int:
        """Forward + backward ≈ 3 forward passes, 2 FLOPs per multiply-accumulate."""
        return 3 * 2 * self.forward_macs


@tf.custom_gradient
def _matmul(x: tf.Tensor, kernel: tf.Tensor):
    """``x @ kernel`` whose input gradient is computed as ``(kernel @ dy^T)^T``.

    TensorFlow's own gradient, ``dy @ kernel^T``, multiplies by the transpose of the large
    kernel (the CNN's 3136x512), which on this CPU was 3.8x slower than the product with the
    kernel as it is stored (0.27 s against 0.07 s of CPU per 60 steps of B=10); transposing the
    small (batch-sized) result instead gives the same numbers up to float32 round-off.
    """

    def grad(dy: tf.Tensor):
        dx = tf.transpose(tf.matmul(kernel, dy, transpose_b=True))
        return dx, tf.matmul(x, dy, transpose_a=True)

    return tf.matmul(x, kernel), grad


def _conv_kernel_grad(x: tf.Tensor, dy: tf.Tensor, kh: int, kw: int, padding: str) -> tf.Tensor:
    """The kernel gradient of a stride-1 ``conv2d``, computed as one forward convolution.

    ``dk[i, j, c, o] = sum over n, h, w of x[n, h+i, w+j, c] * dy[n, h, w, o]`` (x padded as the
    forward pass pads it) is a VALID convolution of x, with its channels as the batch and its
    batch as the channels, by dy as the filter. TensorFlow's ``Conv2DBackpropFilter`` computes
    the same sums, but on this CPU (single-threaded, B=10, the CNN's layers) it took 2.47 ms for
    conv1 and 5.3-9.8 ms for conv2, against 0.81 ms and 4.3 ms this way; the two agree to float32
    round-off (the order of the additions differs).
    """
    if padding == "SAME":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        x = tf.pad(x, [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left], [0, 0]])
    out = tf.nn.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, "VALID")
    return tf.transpose(out, [1, 2, 0, 3])


def conv2d(x: tf.Tensor, kernel: tf.Tensor, padding: str, input_grad: bool = True) -> tf.Tensor:
    """``tf.nn.conv2d(x, kernel, 1, padding)`` with a faster kernel gradient.

    ``input_grad=False`` (the first layer, whose input is the data) leaves out the input
    gradient, which nothing uses: its gradient with respect to ``x`` is None.
    """

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            dk = _conv_kernel_grad(x, dy, kernel.shape[0], kernel.shape[1], padding)
            if not input_grad:
                return None, dk
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x),
                filter=kernel,
                out_backprop=dy,
                strides=[1, 1, 1, 1],
                padding=padding,
            )
            return dx, dk

        return tf.nn.conv2d(x, kernel, 1, padding), grad

    return conv(x, kernel)


def _activation(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    if name == "linear":
        return lambda t: t
    if name == "relu":
        return tf.nn.relu
    raise ValueError(f"activation {name!r} is not supported by the fast engine")


def functional_model(model: tf.keras.Model) -> FunctionalModel:
    """The forward pass of the Keras ``model`` as a function of its weights."""
    model_name = model.name
    layers = tf.keras.layers
    steps: list[Callable[[list[tf.Tensor], tf.Tensor], tf.Tensor]] = []
    macs = 0
    position = 0
    shape: tuple[int, ...] = tuple(model.input_shape[1:])
    for layer in model.layers:
        config = layer.get_config()
        if isinstance(layer, layers.Reshape):
            target = tuple(config["target_shape"])
            steps.append(lambda ws, t, target=target: tf.reshape(t, (-1, *target)))
            shape = target
        elif isinstance(layer, layers.Flatten):
            steps.append(lambda ws, t: tf.reshape(t, (tf.shape(t)[0], -1)))
            shape = (int(np.prod(shape)),)
        elif isinstance(layer, layers.Conv2D) and type(layer) is layers.Conv2D:
            if config["data_format"] != "channels_last" or config["groups"] != 1:
                raise ValueError(f"layer {layer.name} is not supported by the fast engine")
            k, b = position, position + 1
            position += 2
            act = _activation(config["activation"])
            strides = tuple(config["strides"])
            dilations = tuple(config["dilation_rate"])
            padding = config["padding"].upper()

            if strides == (1, 1) and dilations == (1, 1):
                # The first weighted layer's input is the data: no input gradient needed.
                convolve = functools.partial(conv2d, padding=padding, input_grad=k != 0)
            else:
                convolve = functools.partial(
                    tf.nn.convolution, strides=strides, padding=padding, dilations=dilations
                )

            def conv(ws, t, k=k, b=b, act=act, convolve=convolve):
                out = convolve(t, tf.convert_to_tensor(ws[k]))
                return act(tf.nn.bias_add(out, ws[b]))

            steps.append(conv)
            out_shape = tuple(layer.compute_output_shape((1, *shape))[1:])
            kh, kw, cin, cout = layer.kernel.shape
            macs += int(np.prod(out_shape[:2])) * cout * kh * kw * cin
            shape = out_shape
        elif isinstance(layer, layers.MaxPool2D):
            pool = tuple(config["pool_size"])
            strides = tuple(config["strides"])
            padding = config["padding"].upper()
            steps.append(
                lambda ws, t, pool=pool, strides=strides, pad=padding: tf.nn.max_pool2d(
                    t, pool, strides, pad
                )
            )
            shape = tuple(layer.compute_output_shape((1, *shape))[1:])
        elif isinstance(layer, layers.Dense):
            k, b = position, position + 1
            position += 2
            act = _activation(config["activation"])

            def dense(ws, t, k=k, b=b, act=act):
                return act(tf.nn.bias_add(_matmul(t, tf.convert_to_tensor(ws[k])), ws[b]))

            steps.append(dense)
            macs += shape[-1] * config["units"]
            shape = (config["units"],)
        else:
            raise ValueError(f"layer {layer.name} is not supported by the fast engine")
    if position != len(model.trainable_weights) or model.non_trainable_weights:
        raise ValueError(f"model {model_name!r} has weights the fast engine does not know")

    def forward(weights: list[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
        t = x
        for step in steps:
            t = step(weights, t)
        return t

    return FunctionalModel(
        name=model_name,
        forward=forward,
        shapes=tuple(tuple(w.shape) for w in model.get_weights()),
        num_trainable=len(model.trainable_weights),
        forward_macs=macs,
    )
