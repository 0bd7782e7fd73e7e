"""What a model is to fedlab: a builder of a Keras model from the dataset's shapes, as a plug-in.

A builder takes the dataset's example shape and number of classes (``fedlab.data``) and returns a
fresh, uncompiled Keras model whose input is the flattened example (fedlab keeps examples as
``(n, prod(input_shape))`` float32) and whose output is one logit per class. It is registered as a
function (``@MODELS.register("cnn")``), which the registry wraps into a ``Model`` plug-in; a model
with keys of its own sets the builder's ``Config`` to a dataclass of them (extending
``ModelConfig``), and they reach the builder as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from fedlab.plugin import Plugin, PluginConfig, Registry

Builder = Callable[..., Any]


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


def configured(config: type) -> Callable[[Builder], Builder]:
    """Decorator: the builder's own config keys (a dataclass extending ``ModelConfig``), which
    reach it as keyword arguments (``@MODELS.register(...)`` above it)."""

    def mark(builder: Builder) -> Builder:
        builder.Config = config
        return builder

    return mark


@dataclass
class ModelConfig(PluginConfig):
    """The keys every model has (a string name, not an Enum: "2nn" is no identifier)."""


class Model(Plugin):
    """A model option: ``build`` makes a fresh Keras model; ``takes`` says what examples it
    takes (None: any, checked when built)."""

    Config: ClassVar[type] = ModelConfig
    takes: ClassVar[Takes | None] = None

    @staticmethod
    def build(input_shape: tuple[int, ...], num_classes: int, **options: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def adapt(cls, entry: Any) -> type:
        """A ``Model`` subclass as it is; a builder function wrapped into one."""
        if isinstance(entry, type):
            return super().adapt(entry)
        if not callable(entry):
            raise TypeError(f"{entry!r} is neither a Model subclass nor a builder function")
        return type(
            getattr(entry, "__name__", "builder"),
            (cls,),
            {
                "build": staticmethod(entry),
                "takes": getattr(entry, "takes", None),
                "Config": getattr(entry, "Config", ModelConfig),
                "__module__": getattr(entry, "__module__", __name__),
                "__doc__": getattr(entry, "__doc__", None),
            },
        )


MODELS: Registry[type[Model]] = Registry("model", "fedlab.models", Model)


def fits(name: str, input_shape: tuple[int, ...], one_class_per_example: bool) -> bool:
    """Whether model ``name`` takes a dataset's examples: its ``Takes`` against the example's
    shape and whether an example has one class (MNIST) or one per position (Shakespeare). A
    builder that does not say (a user's plug-in) fits everything here and checks when built."""
    kind = MODELS.get(name).takes
    if kind is Takes.image:
        return len(input_shape) == 3 and one_class_per_example
    if kind is Takes.features:
        return one_class_per_example
    if kind is Takes.sequence:
        return len(input_shape) == 1 and not one_class_per_example
    return True


def flat_size(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any):
    """A fresh, uncompiled Keras model by its config name; ``options``: the model's own config
    keys (``model_options``), for a builder that registers a ``Config`` of them."""
    try:
        model = MODELS.get(name)
    except KeyError as err:
        raise ValueError(str(err).strip("\"'")) from None
    return model.build(tuple(input_shape), int(num_classes), **options)


def model_options(cfg: Any) -> dict[str, Any]:
    """A model config's keys other than its name (and target): the builder's keyword arguments."""
    skip = {"name", "_target_"}
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in skip}
