"""fedlab's Keras models as pure functions of their weights, for training without variables.

The layers of a Keras model (``fedlab.models``) are read once and turned into the TensorFlow ops
Keras 2.14 runs for them (``Conv2D``: ``tf.nn.convolution`` + ``bias_add``; ``Dense``: ``matmul`` +
``bias_add``, over the last axis; ``MaxPool2D``: ``max_pool2d``; ``Embedding``: a ``gather`` of
the ids cast to int32; ``LSTM``: Keras' ``standard_lstm``, see ``_lstm``; ``GroupNormalization``:
its grouped moments and ``batch_normalization``; ``Add``, ``Activation``,
``GlobalAveragePooling2D``; ``CenterCrop``: a slice; ``Dropout``: a stateless dropout, see
``_dropout``; the CIFAR CNN's
``LocalResponseNormalization`` and ``PerImageStandardization``: their op), taking the weights as
tensors in Keras order (``get_weights()``). A ``Sequential`` model is the chain of its layers; a
functional one is walked as its graph (``_inbound``), so that branches and residual sums
(ResNet-18-GN) run too. With the weights as plain tensors, a client's whole local training is one
``tf.while_loop`` carrying them, and two clients can train at the same time without sharing a
variable.

The forward pass is Keras' op for op. Two gradients are computed another way than TensorFlow's
default, because they were measurably faster on this CPU and give the same numbers up to float32
round-off: a dense layer's input gradient (``_matmul``) and a convolution's kernel gradient
(``conv2d``); a first convolution's input gradient, which nothing uses, is not computed.

Each supported layer class has one converter (``@converts``); a model that needs another layer
adds its converter, and a layer with none is refused in one line naming it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fedlab.models.cifar_cnn import cifar_layers

# ``forward(weights, x, seed=None)``: ``seed`` (a stateless RNG seed, shape [2]) makes the layers
# that draw at random (Dropout) train; None is inference, where they are the identity.
Forward = Callable[..., tf.Tensor]


@dataclass(frozen=True)
class FunctionalModel:
    """``forward(weights, x) -> logits``; ``shapes`` and ``num_trainable`` in Keras order."""

    name: str
    forward: Forward
    shapes: tuple[tuple[int, ...], ...]
    num_trainable: int
    forward_macs: int  # multiply-accumulates of one example's forward pass
    # For each weight array (Keras order), the position of its layer among the model's layers
    # that have weights, from the input up (the head's arrays have the largest).
    layer_of: tuple[int, ...] = ()

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


def _lstm(x: tf.Tensor, kernel, recurrent, bias, timesteps: int, return_sequences: bool):
    """Keras 2.14's LSTM on CPU (``keras/layers/rnn/lstm.py``, ``standard_lstm``), unrolled.

    At each step ``z = x_t·W + h·U + b`` is split into the gates in Keras' order i, f, c, o;
    ``c = σ(f)·c + σ(i)·tanh(z_c)``, ``h = σ(o)·tanh(c)`` (recurrent activation sigmoid,
    activation tanh), from zero states. ``x·W + b`` is computed for all steps in one product
    (the same numbers up to the order of float32 additions).
    """
    units = recurrent.shape[0]
    n = tf.shape(x)[0]
    xz = tf.matmul(tf.reshape(x, (-1, x.shape[-1])), kernel)
    xz = tf.reshape(tf.nn.bias_add(xz, bias), (n, timesteps, 4 * units))
    h = tf.zeros((n, units), x.dtype)
    c = tf.zeros((n, units), x.dtype)
    outputs = []
    # One unstack, not a slice per step: a slice's gradient is a zero tensor of the whole
    # sequence with one step filled in, so 80 slices cost 80 sequence-sized additions in the
    # backward pass (on the char LSTM, B=10: 246 ms a step against 135 ms for Keras' own LSTM).
    for xz_t in tf.unstack(xz, num=timesteps, axis=1):
        z = xz_t + tf.matmul(h, recurrent)
        zi, zf, zc, zo = tf.split(z, 4, axis=1)
        c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zc)
        h = tf.sigmoid(zo) * tf.tanh(c)
        outputs.append(h)
    return tf.stack(outputs, axis=1) if return_sequences else h


_LSTM_AS_KERAS = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "use_bias": True,
    "go_backwards": False,
    "stateful": False,
    "time_major": False,
    "return_state": False,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
}


def _activation(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    if name == "linear":
        return lambda t: t
    if name == "relu":
        return tf.nn.relu
    raise ValueError(f"activation {name!r} is not supported by the fast engine")


Step = Callable[[list[tf.Tensor], tf.Tensor], tf.Tensor]


@dataclass
class Trace:
    """What converting a model knows at one layer: its input's shape (without the batch), the
    index of its first weight in Keras order, and the multiply-accumulates counted so far.

    A layer with several inputs (``Add``) finds all their shapes in ``input_shapes`` (``shape`` is
    the first one's). ``from_data`` says that the layer's input is a function of the data alone
    (no weight before it), so that no gradient needs to flow into it."""

    shape: tuple[int, ...]
    position: int = 0
    macs: int = 0
    input_shapes: tuple[tuple[int, ...], ...] = ()
    from_data: bool = False
    random_layers: int = 0  # layers that draw at random so far (each folds its own seed)

    def take(self, count: int) -> int:
        """The index of the layer's first weight; the layer owns ``count`` weights from it."""
        first = self.position
        self.position += count
        return first


# A converter turns one Keras layer (and its ``get_config()``) into its ops as a function of the
# weights, and moves the ``Trace`` past the layer (output shape, weights, MACs). Keyed by the
# layer's exact class, so that a subclass with other behaviour (DepthwiseConv2D is a Conv2D) is
# never run as its base. A model needing a new layer adds one converter here, nothing else.
Converter = Callable[[tf.keras.layers.Layer, dict, Trace], Step]
CONVERTERS: dict[type, Converter] = {}


def converts(*layer_types: type) -> Callable[[Converter], Converter]:
    def register(converter: Converter) -> Converter:
        for layer_type in layer_types:
            CONVERTERS[layer_type] = converter
        return converter

    return register


def _output_shape(layer, trace: Trace) -> tuple[int, ...]:
    return tuple(layer.compute_output_shape((1, *trace.shape))[1:])


class Seeded:
    """A step that draws at random while training: ``step(ws, t, seed)``, seed None at
    inference."""

    def __init__(self, run: Callable[[list[tf.Tensor], tf.Tensor, tf.Tensor | None], tf.Tensor]):
        self.run = run

    def __call__(self, ws: list[tf.Tensor], t: tf.Tensor, seed: tf.Tensor | None) -> tf.Tensor:
        return self.run(ws, t, seed)


@converts(tf.keras.layers.Reshape)
def _reshape(layer, config: dict, trace: Trace) -> Step:
    target = tuple(config["target_shape"])
    trace.shape = target
    return lambda ws, t: tf.reshape(t, (-1, *target))


@converts(tf.keras.layers.Flatten)
def _flatten(layer, config: dict, trace: Trace) -> Step:
    trace.shape = (int(np.prod(trace.shape)),)
    return lambda ws, t: tf.reshape(t, (tf.shape(t)[0], -1))


@converts(tf.keras.layers.Conv2D)
def _conv2d(layer, config: dict, trace: Trace) -> Step:
    if config["data_format"] != "channels_last" or config["groups"] != 1:
        raise ValueError(f"layer {layer.name} is not supported by the fast engine")
    use_bias = bool(config["use_bias"])
    k = trace.take(2 if use_bias else 1)
    act = _activation(config["activation"])
    strides = tuple(config["strides"])
    dilations = tuple(config["dilation_rate"])
    padding = config["padding"].upper()
    if strides == (1, 1) and dilations == (1, 1):
        # A convolution of the data itself (the first weighted layer): no input gradient needed.
        convolve = functools.partial(conv2d, padding=padding, input_grad=not trace.from_data)
    else:
        convolve = functools.partial(
            tf.nn.convolution, strides=strides, padding=padding, dilations=dilations
        )
    out_shape = _output_shape(layer, trace)
    kh, kw, cin, cout = layer.kernel.shape
    trace.macs += int(np.prod(out_shape[:2])) * cout * kh * kw * cin
    trace.shape = out_shape

    def conv(ws, t):
        out = convolve(t, tf.convert_to_tensor(ws[k]))
        return act(tf.nn.bias_add(out, ws[k + 1]) if use_bias else out)

    return conv


@converts(tf.keras.layers.MaxPool2D)
def _max_pool(layer, config: dict, trace: Trace) -> Step:
    pool = tuple(config["pool_size"])
    strides = tuple(config["strides"])
    padding = config["padding"].upper()
    trace.shape = _output_shape(layer, trace)
    return lambda ws, t: tf.nn.max_pool2d(t, pool, strides, padding)


@converts(tf.keras.layers.GlobalAveragePooling2D)
def _global_average_pool(layer, config: dict, trace: Trace) -> Step:
    if config["data_format"] != "channels_last":
        raise ValueError(f"layer {layer.name} is not supported by the fast engine")
    keepdims = bool(config["keepdims"])
    trace.shape = _output_shape(layer, trace)
    return lambda ws, t: tf.reduce_mean(t, axis=[1, 2], keepdims=keepdims)


@converts(tf.keras.layers.Activation)
def _activation_layer(layer, config: dict, trace: Trace) -> Step:
    act = _activation(config["activation"])
    return lambda ws, t: act(t)


@converts(tf.keras.layers.Add)
def _add(layer, config: dict, trace: Trace) -> Step:
    # Keras broadcasts or expands inputs of other shapes; ResNet's residuals never need that.
    if len(set(trace.input_shapes)) != 1:
        raise ValueError(
            f"layer {layer.name} adds shapes {list(trace.input_shapes)}; the fast engine adds "
            "only inputs of one shape"
        )

    def add(ws, ts):
        out = ts[0]
        for t in ts[1:]:  # Keras' order of the additions (``Add._merge_function``)
            out = out + t
        return out

    return add


@converts(tf.keras.layers.GroupNormalization)
def _group_norm(layer, config: dict, trace: Trace) -> Step:
    """Keras 2.14's ``GroupNormalization.call`` (``keras/src/layers/normalization/
    group_normalization.py``) op for op, with no mask: the channels (last axis) split into
    ``groups``, the mean and variance over each group and all positions, then
    ``tf.nn.batch_normalization`` with gamma and beta; Keras' moments are
    ``tf.nn.weighted_moments`` with weights of one, that is these sums divided by the count."""
    shape = trace.shape
    rank = len(shape) + 1
    if config["axis"] not in (-1, rank - 1):
        raise ValueError(f"layer {layer.name}: only channels_last group norm runs on fast")
    channels = trace.shape[-1]
    groups = channels if config["groups"] == -1 else config["groups"]
    scale, center = bool(config["scale"]), bool(config["center"])
    k = trace.take(int(scale) + int(center))
    epsilon = config["epsilon"]
    grouped = (*trace.shape[:-1], groups, channels // groups)
    axes = [*range(1, rank - 1), rank]  # every axis but the batch and the group
    count = float(np.prod(trace.shape) // groups)
    broadcast = (*([1] * (rank - 1)), groups, channels // groups)

    def group_norm(ws, t):
        x = tf.reshape(t, (-1, *grouped))
        mean = tf.reduce_sum(x, axes, keepdims=True) / count
        variance = tf.reduce_sum(tf.math.squared_difference(x, mean), axes, keepdims=True) / count
        gamma = tf.reshape(ws[k], broadcast) if scale else None
        beta = tf.reshape(ws[k + int(scale)], broadcast) if center else None
        out = tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)
        return tf.reshape(out, (-1, *shape))

    return group_norm


@converts(tf.keras.layers.Dense)
def _dense(layer, config: dict, trace: Trace) -> Step:
    k = trace.take(2)
    act = _activation(config["activation"])
    units = config["units"]
    trace.macs += int(np.prod(trace.shape[:-1])) * trace.shape[-1] * units
    trace.shape = (*trace.shape[:-1], units)

    def dense(ws, t):
        kernel = tf.convert_to_tensor(ws[k])
        if t.shape.rank == 2:
            return act(tf.nn.bias_add(_matmul(t, kernel), ws[k + 1]))
        # Over the last axis, as Keras' tensordot: one product of all positions.
        flat = _matmul(tf.reshape(t, (-1, t.shape[-1])), kernel)
        out = tf.reshape(flat, tf.concat([tf.shape(t)[:-1], [units]], 0))
        return act(tf.nn.bias_add(out, ws[k + 1]))

    return dense


@converts(tf.keras.layers.Embedding)
def _embedding(layer, config: dict, trace: Trace) -> Step:
    if config.get("mask_zero"):
        raise ValueError(f"layer {layer.name}: mask_zero is not supported by fast")
    k = trace.take(1)
    trace.shape = (*trace.shape, config["output_dim"])
    return lambda ws, t: tf.gather(tf.convert_to_tensor(ws[k]), tf.cast(t, tf.int32))


@converts(tf.keras.layers.LSTM)
def _lstm_layer(layer, config: dict, trace: Trace) -> Step:
    odd = {key: config.get(key) for key, want in _LSTM_AS_KERAS.items()}
    if any(config.get(key) != want for key, want in _LSTM_AS_KERAS.items()):
        raise ValueError(f"layer {layer.name} ({odd}) is not supported by the fast engine")
    k = trace.take(3)
    units, timesteps = config["units"], trace.shape[0]
    sequences = bool(config["return_sequences"])
    trace.macs += timesteps * 4 * units * (trace.shape[-1] + units)
    trace.shape = (timesteps, units) if sequences else (units,)

    def lstm(ws, t):
        kernel, recurrent, bias = (tf.convert_to_tensor(w) for w in ws[k : k + 3])
        return _lstm(t, kernel, recurrent, bias, timesteps, sequences)

    return lstm


@converts(tf.keras.layers.Dropout)
def _dropout(layer, config: dict, trace: Trace) -> Step:
    """Keras' ``Dropout``: while training each value is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``, else zeroed; at inference (and at rate 0, as Keras) the
    identity. Drawn with ``tf.nn.experimental.stateless_dropout`` from the step's seed folded with
    the layer's place among the random layers, so that the same (run seed, round, client, step)
    always drops the same units: a resumed run is bit-identical. Not Keras' own draws (its
    generator is stateful), so engine=fast and engine=tff agree only in distribution."""
    if config.get("noise_shape") is not None:
        raise ValueError(f"layer {layer.name}: noise_shape is not supported by the fast engine")
    rate = float(config["rate"])
    salt = trace.random_layers
    trace.random_layers += 1

    def dropout(ws, t, seed):
        if seed is None or rate == 0.0:
            return t
        layer_seed = tf.random.experimental.stateless_fold_in(seed, salt)
        return tf.nn.experimental.stateless_dropout(t, rate, layer_seed)

    return Seeded(dropout)


@converts(tf.keras.layers.CenterCrop)
def _center_crop(layer, config: dict, trace: Trace) -> Step:
    # Keras' crop offset, floor((size - crop) / 2); its resize branch (an image smaller than the
    # crop) has no converter: the CIFAR CNN refuses such shapes when it is built.
    height, width = config["height"], config["width"]
    top, left = (trace.shape[0] - height) // 2, (trace.shape[1] - width) // 2
    if top < 0 or left < 0:
        raise ValueError(f"layer {layer.name}: a crop larger than its input is not supported")
    trace.shape = (height, width, *trace.shape[2:])
    return lambda ws, t: t[:, top : top + height, left : left + width]


# fedlab.models.cifar_cnn's own weightless layers: the TensorFlow op each one's call() runs.
_CIFAR_LAYERS = cifar_layers()


@converts(_CIFAR_LAYERS.PerImageStandardization)
def _per_image_standardization(layer, config: dict, trace: Trace) -> Step:
    return lambda ws, t: tf.image.per_image_standardization(t)


@converts(_CIFAR_LAYERS.LocalResponseNormalization)
def _local_response_normalization(layer, config: dict, trace: Trace) -> Step:
    args = [config[k] for k in ("depth_radius", "bias", "alpha", "beta")]
    return lambda ws, t: tf.nn.local_response_normalization(t, *args)


# A layer of the model, converted: its name, the names of the layers whose outputs it takes (None:
# the model's input), and its step.
Node = tuple[str, list[str | None], Step]


def _inbound(model: tf.keras.Model) -> list[tuple[tf.keras.layers.Layer, list[str | None]]]:
    """Each layer with the layers it takes its inputs from, inputs first.

    A ``Sequential`` model is the chain of its layers. A functional model's graph is read from
    its Keras config (``get_config()["layers"][i]["inbound_nodes"]``: one node for a layer
    called once, whose entries name the layers whose outputs it takes); Keras lists the layers
    in an order where each comes after its inputs (``model.layers``).
    """
    if isinstance(model, tf.keras.Sequential):
        names = [None, *(layer.name for layer in model.layers)]
        return [(layer, [names[i]]) for i, layer in enumerate(model.layers)]
    for layer in model.layers:
        if type(layer) is not tf.keras.layers.InputLayer and type(layer) not in CONVERTERS:
            raise ValueError(f"layer {layer.name} is not supported by the fast engine")
    config = model.get_config()
    if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
        raise ValueError(f"model {model.name!r}: the fast engine runs one input and one output")
    (input_name, *_), (output_name, *_) = config["input_layers"][0], config["output_layers"][0]
    graph = []
    for entry in config["layers"]:
        name, nodes = entry["name"], entry["inbound_nodes"]
        if name == input_name:
            continue
        # A layer called twice (shared weights) or taking one of several outputs of another.
        if len(nodes) != 1 or any(node[1:] != [0, 0, {}] for node in nodes[0]):
            raise ValueError(f"layer {name} is not used as the fast engine can run it: {nodes}")
        graph.append(
            (model.get_layer(name), [None if n[0] == input_name else n[0] for n in nodes[0]])
        )
    if graph[-1][0].name != output_name:
        raise ValueError(f"model {model.name!r}: its output is not its last layer")
    return graph


def _first_weights(model: tf.keras.Model) -> dict[str, int]:
    """Each layer's first weight's index in ``model.get_weights()`` (the order in which the
    engines and TFF exchange weights); a layer's weights must be consecutive there."""
    index = {id(w): i for i, w in enumerate(model.weights)}
    first = {}
    for layer in model.layers:
        positions = [index.get(id(w)) for w in layer.weights]
        if positions and positions != list(range(positions[0], positions[0] + len(positions))):
            raise ValueError(f"layer {layer.name}: its weights are not together in Keras order")
        first[layer.name] = positions[0] if positions else 0
    return first


def functional_model(model: tf.keras.Model) -> FunctionalModel:
    """The forward pass of the Keras ``model`` (``Sequential``, or functional with branches and
    sums) as a function of its weights."""
    model_name = model.name
    if model.non_trainable_weights:
        raise ValueError(
            f"model {model_name!r} has non-trainable weights "
            f"({', '.join(w.name for w in model.non_trainable_weights[:3])}), which the fast "
            "engine does not update (BatchNormalization's statistics: use GroupNormalization)"
        )
    if model.losses:
        raise ValueError(
            f"model {model_name!r} has regularization losses, which the fast engine does not add"
        )
    first = _first_weights(model)
    shapes: dict[str | None, tuple[int, ...]] = {None: tuple(model.input_shape[1:])}
    weighted: dict[str | None, bool] = {None: False}  # an output that depends on a weight
    macs = random_layers = 0
    nodes: list[Node] = []
    for layer, inputs in _inbound(model):
        converter = CONVERTERS.get(type(layer))
        if converter is None:
            raise ValueError(f"layer {layer.name} is not supported by the fast engine")
        if any(name not in shapes for name in inputs):
            raise ValueError(f"layer {layer.name} comes before its inputs {inputs}")
        in_shapes = tuple(shapes[name] for name in inputs)
        start = first[layer.name]
        trace = Trace(
            shape=in_shapes[0],
            position=start,
            macs=macs,
            input_shapes=in_shapes,
            from_data=not any(weighted[name] for name in inputs),
            random_layers=random_layers,
        )
        step = converter(layer, layer.get_config(), trace)
        if trace.position - start != len(layer.trainable_weights):
            raise ValueError(f"layer {layer.name} has weights the fast engine does not know")
        shapes[layer.name], macs, random_layers = trace.shape, trace.macs, trace.random_layers
        weighted[layer.name] = bool(layer.trainable_weights) or not trace.from_data
        nodes.append((layer.name, inputs, step))
    output = nodes[-1][0]

    def forward(weights: list[tf.Tensor], x: tf.Tensor, seed: tf.Tensor | None = None):
        values: dict[str | None, tf.Tensor] = {None: x}
        for name, inputs, step in nodes:
            args = [values[i] for i in inputs]
            arg = args[0] if len(args) == 1 else args
            seeded = isinstance(step, Seeded)
            values[name] = step(weights, arg, seed) if seeded else step(weights, arg)
        return values[output]

    with_weights = sorted((first[layer.name], len(layer.weights)) for layer in model.layers)
    layer_of = [0] * len(model.weights)
    for ordinal, (start, count) in enumerate(c for c in with_weights if c[1]):
        layer_of[start : start + count] = [ordinal] * count
    return FunctionalModel(
        name=model_name,
        forward=forward,
        shapes=tuple(tuple(w.shape) for w in model.get_weights()),
        num_trainable=len(model.trainable_weights),
        forward_macs=macs,
        layer_of=tuple(layer_of),
    )
