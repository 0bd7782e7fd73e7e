"""Models: the paper's parameter counts (McMahan et al. 2017, Section 3)."""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.models import build_model
from tests.conftest import assert_refused
from tests.engines import MNIST_SHAPE


@pytest.mark.parametrize(
    ("name", "params"),
    # emnist_cnn on 10 classes: TFF's create_conv_dropout_model(only_digits=True) docstring.
    [("cnn", 1_663_370), ("2nn", 199_210), ("logreg", 7_850), ("emnist_cnn", 1_199_882)],
)
def test_parameter_counts_equal_the_papers(name: str, params: int) -> None:
    model = build_model(name, *MNIST_SHAPE)
    assert model.count_params() == params
    logits = model(np.zeros((3, 784), np.float32))
    assert logits.shape == (3, 10)


def test_unknown_model_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="'vgg'.*cnn, 2nn, logreg"):
        build_model("vgg", *MNIST_SHAPE)


def test_which_models_fit_which_datasets() -> None:
    """Known at compose time from each builder's ``@takes`` and the dataset's spec, without
    TensorFlow: images for the CNNs, one class per example for the flat models, sequences with a
    class per position for the LSTM only."""
    from fedlab.data import DATASETS
    from fedlab.models import MODELS, fits

    fitting = {
        dataset: {
            m for m in MODELS.names() if fits(m, tuple(spec.input_shape), spec.example_labels)
        }
        for dataset, spec in DATASETS.items()
    }
    images = {"cnn", "2nn", "logreg", "cifar_cnn", "emnist_cnn", "resnet18_gn"}
    for dataset in ("mnist", "emnist", "cifar10", "cifar100"):
        assert fitting[dataset] == images, dataset
    assert fitting["shakespeare"] == {"char_lstm"}


def test_char_lstm_starts_from_keras_or_tensorflow_1_defaults() -> None:
    """``model.initializer`` picks the starting weights only: the same layers and parameter count
    (820,522 for TFF's 90 ids), Keras' ranges by default, TF 1.x's Glorot ranges with ``tf1``
    (the embedding ±sqrt(6/98), each LSTM's two kernels as one [input + 256, 1024] matrix)."""
    import math

    import tensorflow as tf

    def weights(**options) -> list[np.ndarray]:
        """embedding; kernel, recurrent kernel, bias of each LSTM; dense kernel, bias."""
        tf.keras.utils.set_random_seed(0)
        model = build_model("char_lstm", (80,), 90, **options)
        assert model.count_params() == 820_522
        return model.get_weights()

    def spans(values: np.ndarray, limit: float) -> bool:
        """Within ±limit and reaching past 98% of it: uniform on that range, as drawn."""
        return 0.98 * limit < np.abs(values).max() <= limit

    keras, default, tf1 = weights(initializer="keras"), weights(), weights(initializer="tf1")
    for a, b in zip(keras, default, strict=True):
        np.testing.assert_array_equal(a, b)
    assert spans(keras[0], 0.05)
    assert spans(tf1[0], math.sqrt(6 / (90 + 8)))
    for first, inputs in ((1, 8), (4, 256)):
        kernel, recurrent, bias = keras[first : first + 3]
        assert spans(kernel, math.sqrt(6 / (inputs + 1024)))
        np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(256), atol=1e-5)  # orthogonal
        limit = math.sqrt(6 / (inputs + 256 + 1024))
        assert spans(tf1[first], limit) and spans(tf1[first + 1], limit)
        for b in (bias, tf1[first + 2]):  # the forget gate's bias 1, the other gates' 0
            assert (b[256:512] == 1).all() and (np.delete(b, np.s_[256:512]) == 0).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.initializer=tf2"],
            "model.initializer='tf2' is invalid; allowed: one of keras, tf1",
        ),
        (
            ["dataset.corpus=leaf"],
            "dataset.corpus='leaf' is invalid; allowed: one of auto, texts, tff_sqlite",
        ),
    ],
)
def test_a_bad_choice_names_the_allowed_ones(overrides, message) -> None:
    assert_refused(["dataset=shakespeare", "model=char_lstm", *overrides], [message])
