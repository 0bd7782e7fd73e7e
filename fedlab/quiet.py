"""Silence TensorFlow's and TFF's start-up chatter, in one place.

``TF_CPP_MIN_LOG_LEVEL`` (C++ logs) is set in ``fedlab/__init__.py`` because TensorFlow reads it
at import. The Python side logs through absl and the ``tensorflow`` logger; Hydra configures the
root logger at INFO, which would print TFF's "Adding default num_examples metric" lines.
"""

from __future__ import annotations

import logging
import warnings


def silence_frameworks() -> None:
    for name in ("absl", "tensorflow", "h5py", "matplotlib", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    frameworks = r"(tensorflow|tensorflow_federated|keras|tf_keras|absl|jax|mlflow|google)(\..*)?$"
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=frameworks)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
