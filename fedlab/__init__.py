"""fedlab: Hydra-configured federated-learning experiments on TensorFlow Federated, in MLflow."""

import os

# TensorFlow reads this once, at import: set it before any fedlab module imports TF, so that
# CUDA/oneDNN start-up lines do not bury fedlab's output. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
