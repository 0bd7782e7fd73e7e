"""Model builders, one module each, registered by name (the ``model`` config group).

A builder takes the dataset's example shape and number of classes (``fedlab.data``) and returns a
fresh, uncompiled Keras model whose input is the flattened example (fedlab keeps examples as
``(n, prod(input_shape))`` float32) and whose output is one logit per class; the softmax lives in
the loss (``from_logits=True``), the numerically stable form of a softmax output layer with the
same parameters. Adding a model: a module here that registers a builder, and
``conf/model/<name>.yaml``. A model with keys of its own (``model.dropout``) sets the builder's
``Config`` to a dataclass of them; they reach the builder as keyword arguments. A builder says
what examples it takes (``@takes``), so that a run whose dataset it cannot take is refused when
the config is composed, before TensorFlow is imported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from omegaconf import MISSING

from fedlab.registry import Registry

Builder = Callable[[tuple[int, ...], int], Any]
MODELS: Registry[Builder] = Registry("model", "fedlab.models")


class Takes(StrEnum):
    """What a model's input and output are, as far as a dataset has to fit them."""

    image = "image"  # (height, width, channels) examples, one class each
    features = "features"  # any example (flattened), one class each
    sequence = "sequence"  # a sequence of ids, a class (the next id) at every position


def takes(kind: Takes) -> Callable[[Builder], Builder]:
    """Decorator: the examples a builder takes (``@MODELS.register(...)`` above it)."""

    def mark(builder: Builder) -> Builder:
        builder.takes = Takes(kind)
        return builder

    return mark


def fits(name: str, input_shape: tuple[int, ...], one_class_per_example: bool) -> bool:
    """Whether model ``name`` takes a dataset's examples: its ``Takes`` against the example's
    shape and whether an example has one class (MNIST) or one per position (Shakespeare). A
    builder that does not say (a user's plug-in) fits everything here and checks when built."""
    kind = getattr(MODELS.get(name), "takes", None)
    if kind is Takes.image:
        return len(input_shape) == 3 and one_class_per_example
    if kind is Takes.features:
        return one_class_per_example
    if kind is Takes.sequence:
        return len(input_shape) == 1 and not one_class_per_example
    return True


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
