"""Model builders, one module each, registered by name (the ``model`` config group).

A builder takes the dataset's example shape and number of classes (``fedlab.data``) and returns a
fresh, uncompiled Keras model whose input is the flattened example (fedlab keeps examples as
``(n, prod(input_shape))`` float32) and whose output is one logit per class; the softmax lives in
the loss (``from_logits=True``), the numerically stable form of a softmax output layer with the
same parameters. Adding a model: a module here that registers a builder, and
``conf/model/<name>.yaml``. A model with keys of its own (``model.dropout``) sets the builder's
``Config`` to a dataclass of them; they reach the builder as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from fedlab.registry import Registry

Builder = Callable[[tuple[int, ...], int], Any]
MODELS: Registry[Builder] = Registry("model", "fedlab.models")


@dataclass
class ModelConfig:
    # A string, not an Enum: OmegaConf matches Enum members by name and "2nn" is no identifier.
    name: str = MISSING


def flat_size(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any):
    """A fresh, uncompiled Keras model by its config name; ``options``: the model's own config
    keys (``model_options``), for a builder that registers a ``Config`` of them."""
    try:
        builder = MODELS.get(name)
    except KeyError as err:
        raise ValueError(str(err).strip("\"'")) from None
    return builder(tuple(input_shape), int(num_classes), **options)


def model_options(cfg: Any) -> dict[str, Any]:
    """A model config's keys other than its name: the builder's keyword arguments."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "name"}


# The paper's models first, in the paper's order; any other module here is found by the registry.
from fedlab.models import cnn, two_nn, logreg  # noqa: E402, F401, I001
