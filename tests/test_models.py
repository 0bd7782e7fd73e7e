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
