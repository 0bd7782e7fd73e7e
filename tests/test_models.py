"""Models: the paper's parameter counts (McMahan et al. 2017, Section 3)."""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.models import build_model
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
