"""ResNet-18 with group normalization (``fedlab.models.resnet``) and what the fast engine learned
for it: a functional model's graph (branches and sums), ``GroupNormalization``, ``Add``,
``Activation``, convolutions without bias and ``GlobalAveragePooling2D``.

Tolerances, and why: the forward pass is Keras' ops in Keras' order, so the logits agree to
float32 round-off (``atol=1e-5`` on logits of order 1; seen: equal). The gradients are the same
derivatives, but TensorFlow differentiates Keras' ``weighted_moments`` (its weights of one
included) and the fast engine its plain sums, and the convolutions' kernel gradients are summed in
another order (``fedlab.backends.fast.functional.conv2d``): ``atol=1e-5`` on gradients of order
0.1-1 (seen: <= 3e-6). The engine comparison uses ``tests/test_fast.py``'s tolerances.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedlab.core.types import ClientWork
from fedlab.models import build_model
from tests.conftest import worker_pids
from tests.test_fast import _assert_same_metrics, _assert_same_state, opt


def _keras_and_fast(model, x, y):
    """Logits, loss and gradients of ``model`` at ``x``, by Keras and by the fast engine."""
    import tensorflow as tf

    from fedlab.backends.fast.functional import functional_model
    from fedlab.backends.loss import batch_loss

    fast = functional_model(model)
    weights = [tf.Variable(w) for w in model.get_weights()]
    with tf.GradientTape(persistent=True) as tape:
        keras_logits = model(x)
        keras_loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y, keras_logits
        )
        fast_logits = fast.forward(weights, x)
        fast_loss = batch_loss(fast_logits, y, int(x.shape[0]), None)[0]
    keras_grads = tape.gradient(keras_loss, model.trainable_weights)
    fast_grads = tape.gradient(fast_loss, weights)
    as_np = [tf.convert_to_tensor(g).numpy() for g in (*keras_grads, *fast_grads)]
    n = len(keras_grads)
    return (
        (keras_logits.numpy(), float(keras_loss), as_np[:n]),
        (fast_logits.numpy(), float(fast_loss), as_np[n:]),
    )


def _assert_fast_equals_keras(model, batch: int, seed: int = 0) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    # Random weights, gammas around 1, so that every weight moves the output.
    model.set_weights(
        [
            (rng.standard_normal(w.shape) * 0.3 + ("gamma" in w.name)).astype(np.float32)
            for w in model.weights
        ]
    )
    x = tf.constant(rng.random((batch, model.input_shape[1])), tf.float32)
    y = tf.constant(rng.integers(0, model.output_shape[-1], batch), tf.int32)
    (k_logits, k_loss, k_grads), (f_logits, f_loss, f_grads) = _keras_and_fast(model, x, y)
    np.testing.assert_allclose(f_logits, k_logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(f_loss, k_loss, rtol=1e-5)
    assert len(f_grads) == len(k_grads) == len(model.get_weights())
    for got, want, w in zip(f_grads, k_grads, model.weights, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=w.name)
        assert np.abs(got).max() > 1e-4, w.name  # every weight's gradient is seen, none is zero


# -- the model --------------------------------------------------------------------------------


def test_resnet18_gn_is_tffs_create_resnet18_with_logits() -> None:
    """The same weights in the same order as TFF 0.87's ``create_resnet18`` (its softmax aside;
    fedlab's models output logits) for CIFAR-10, and the parameter counts for CIFAR-10 and
    CIFAR-100 (the 100-class model differs only in its dense layer: 90 more classes of 513)."""
    import tensorflow as tf
    from tensorflow_federated.python.simulation.models import resnet_models

    ours = build_model("resnet18_gn", (32, 32, 3), 10)
    tffs = resnet_models.create_resnet18((32, 32, 3), 10)
    assert ours.count_params() == tffs.count_params() == 11_181_642
    assert ours.output_shape == (None, 10) and ours.input_shape == (None, 32 * 32 * 3)
    assert [w.shape for w in ours.weights] == [w.shape for w in tffs.weights]
    kinds = [type(layer).__name__ for layer in ours.layers]
    assert kinds.pop(1) == "Reshape"  # fedlab's input is the flattened image
    assert kinds == [type(layer).__name__ for layer in tffs.layers]
    assert not ours.non_trainable_weights and not ours.losses
    norms = [
        layer for layer in ours.layers if isinstance(layer, tf.keras.layers.GroupNormalization)
    ]
    assert len(norms) == 20 and {layer.groups for layer in norms} == {2}  # Reddi et al.'s 2
    assert build_model("resnet18_gn", (32, 32, 3), 100).count_params() == 11_227_812


def test_resnet18_gn_refuses_what_it_cannot_take() -> None:
    with pytest.raises(ValueError, match=r"needs images .*\(784,\)"):
        build_model("resnet18_gn", (784,), 10)
    from fedlab.models.resnet import resnet18_gn

    with pytest.raises(ValueError, match="width=3 is not a multiple of groups=2"):
        resnet18_gn((8, 8, 3), 5, width=3)


# -- the fast engine against Keras ------------------------------------------------------------


def test_the_fast_resnet_equals_keras() -> None:
    """ResNet-18-GN at width 4 (filters 4-32) on 8x8x3 images and 5 classes: every layer kind
    and every block of the real model, small enough to take seconds."""
    from fedlab.models.resnet import resnet18_gn

    model = resnet18_gn((8, 8, 3), 5, width=4)
    # The engines and TFF exchange weights as model.get_weights(), trainable ones first.
    assert [w.name for w in model.weights] == [w.name for w in model.trainable_weights]
    _assert_fast_equals_keras(model, batch=6)


def test_a_branching_functional_model_equals_keras() -> None:
    """A hand-made graph: two branches from the input (one strided, one through group norm
    without beta, one through group norm without gamma), a sum of three, an Activation layer,
    pooling with keepdims, and layers listed by Keras in another order than they were made."""
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = layers.Input(shape=(6 * 6 * 2,))
    image = layers.Reshape((6, 6, 2))(inputs)
    first = layers.Conv2D(4, 1, strides=2, use_bias=False, name="made_first")(image)
    second = layers.Conv2D(4, 3, padding="same", name="made_second")(image)
    second = layers.GroupNormalization(2, center=False, epsilon=1e-2)(second)
    second = layers.MaxPool2D(2)(layers.Activation("relu")(second))
    third = layers.GroupNormalization(4, scale=False)(
        layers.Conv2D(4, 2, strides=2, use_bias=False)(image)
    )
    summed = layers.Activation("relu")(layers.Add()([first, second, third]))
    pooled = layers.GlobalAveragePooling2D(keepdims=True)(summed)
    logits = layers.Dense(3)(layers.Flatten()(pooled))
    model = tf.keras.Model(inputs, logits)
    order = [layer.name for layer in model.layers]
    assert order.index("made_second") < order.index("made_first")  # not creation order
    _assert_fast_equals_keras(model, batch=5, seed=1)


def test_the_fast_engine_refuses_what_it_would_compute_wrongly() -> None:
    """One line each: batch norm (non-trainable statistics, which TFF's weight exchange and the
    fast engine's pure function do not update), a regularized kernel (a loss term the fast
    engine would leave out), a layer called twice (shared weights) and a broadcasting sum."""
    import tensorflow as tf

    from fedlab.backends.fast.functional import functional_model

    layers = tf.keras.layers

    def graph(*make):
        inputs = layers.Input(shape=(8,))
        x = inputs
        for f in make:
            x = f(x)
        return tf.keras.Model(inputs, x)

    shared = layers.Dense(8, name="dense_shared")
    cases = {
        "non-trainable weights.*moving_mean.*GroupNormalization": graph(
            layers.Dense(4), layers.BatchNormalization()
        ),
        "regularization losses": graph(
            layers.Dense(4, kernel_regularizer=tf.keras.regularizers.l2(1e-4))
        ),
        "dense_shared is not used as the fast engine can run it": graph(shared, shared),
        r"adds shapes \[\(4,\), \(1,\)\]": graph(
            lambda x: layers.Add()([layers.Dense(4)(x), layers.Dense(1)(x)])
        ),
    }
    for message, model in cases.items():
        with pytest.raises(ValueError, match=message) as err:
            functional_model(model)
        assert "\n" not in str(err.value)


# -- the fast engine against TFF --------------------------------------------------------------


@pytest.fixture(scope="module")
def tff_worker():
    from fedlab.backends.tff import LocalWorker

    with LocalWorker() as worker:
        yield worker
    assert worker.pid not in worker_pids()


@pytest.mark.slow
def test_a_resnet_round_equals_tffs_build_weighted_fed_avg(tff_worker) -> None:
    """Two rounds of ResNet-18-GN (width 8) on three clients of 8x8x3 images and 5 classes,
    each engine from the same state, as ``tests/test_fast.py`` compares its models."""
    import functools

    from fedlab.backends.fast import build as build_fast
    from fedlab.backends.tff import build
    from fedlab.models.resnet import resnet18_gn
    from tests.engines import parts

    shape, classes = (8, 8, 3), 5
    client, server = opt("sgd", 0.05), opt("sgd", 1.0)
    p = dataclasses.replace(
        parts("logreg", client, server),
        make_model=functools.partial(resnet18_gn, shape, classes, width=8),
        input_shape=shape,
        num_classes=classes,
    )
    tff_engine = build(p)
    fast = build_fast(p)  # the engine a run builds from the same parts
    initial = p.make_model().get_weights()
    tff_state, fast_state = tff_engine.initialize(initial), fast.initialize(initial)
    rng = np.random.default_rng(0)
    for _ in range(2):
        clients = []
        for n in (7, 13, 20):  # unequal: the mean is weighted by examples; B=5 leaves 2 and 3
            x = rng.random((n, int(np.prod(shape))), dtype=np.float32)
            y = rng.integers(0, classes, n).astype(np.int32)
            clients.append(ClientWork(x, y, rng.permutation(n)[None], 5))
        tff_out, fast_out = tff_engine.next(tff_state, clients), fast.next(fast_state, clients)
        tff_arrays = tff_engine.state_arrays(tff_out.state)
        _assert_same_state(fast.state_arrays(fast_out.state), tff_arrays, len(initial), server)
        _assert_same_metrics(fast_out, tff_out)
        moved = max(
            np.abs(a - b).max()
            for a, b in zip(tff_arrays, fast.state_arrays(fast_state), strict=True)
        )
        assert moved > 1e-3  # the round changed the model, visibly to the comparison
        tff_state, fast_state = tff_out.state, fast.state_from_arrays(tff_arrays)
