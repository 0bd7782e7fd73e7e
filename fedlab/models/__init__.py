"""Model builders, one module each, registered by name (the ``model`` config group).

A builder takes the dataset's example shape and number of classes (``fedlab.data``) and returns a
fresh, uncompiled Keras model whose input is the flattened example and whose output is one logit
per class; the softmax lives in the loss (``from_logits=True``), the numerically stable form of a
softmax output layer with the same parameters. Adding a model: a module here that registers a
builder (``fedlab.models.base``), and ``conf/model/<name>.yaml``. A builder says what examples it
takes (``@takes``), so that a run whose dataset it cannot take is refused when the config is
composed, before TensorFlow is imported.
"""

import importlib

from fedlab.models.base import (
    MODELS,
    Model,
    ModelConfig,
    Takes,
    build_model,
    configured,
    fits,
    flat_size,
    model_options,
    takes,
)

# The paper's models first, in the paper's order (the order of "allowed: model=..."); any other
# module here is found by the registry, in file-name order.
for _paper_model in ("cnn", "two_nn", "logreg"):
    importlib.import_module(f"fedlab.models.{_paper_model}")

__all__ = [
    "MODELS",
    "Model",
    "ModelConfig",
    "Takes",
    "build_model",
    "configured",
    "fits",
    "flat_size",
    "model_options",
    "takes",
]
