"""fedlab: Hydra-configured federated-learning experiments on TensorFlow, tracked in MLflow."""

import os

# TensorFlow reads this once, at import: set it before any fedlab module imports TF, so that
# CUDA/oneDNN start-up lines do not bury fedlab's output. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"


def __getattr__(name: str):
    """``fedlab.run`` and ``fedlab.compose`` (``fedlab.api``), imported on first use: importing
    fedlab stays cheap for the modules and processes (Ray actors) that never call them."""
    if name in ("run", "compose"):
        from fedlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'fedlab' has no attribute {name!r}")
