"""Silence the frameworks' chatter (TensorFlow's, TFF's, Hydra's sweep plug-ins'), in one place.

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


def silence_sweeper_plugins() -> None:
    """Warnings Hydra's sweep plug-ins give at every job, which say nothing the user can act on.

    - hydra-optuna-sweeper 1.3 builds its search space from Optuna's distribution classes of
      before Optuna 3 (``LogUniformDistribution``, ``IntUniformDistribution``, ...), and Optuna
      5 warns (FutureWarning, two lines) each time one is made: once per trial, between the
      trials' results, and again in each job that reads the study (the stored trials name
      them). The plug-in's last release is 1.3; the classes work until Optuna 6, and
      ``pyproject.toml`` keeps optuna < 6.
    - Its TPE sampler config passes TPESampler arguments Optuna 4.3 to 4.9 deprecated
      (``consider_prior``, ``prior_weight``, ...): five FutureWarnings when a search starts.
    - ``conf/hydra/launcher/ray.yaml`` shadows hydra-ray-launcher's own ``ray`` config on
      purpose (see its comments); Hydra then merges the two and warns, at every job, that it
      does so.
    """
    warnings.filterwarnings(
        "ignore",
        message=r"(Int|IntLog|Log|Discrete)?UniformDistribution has been deprecated",
        category=FutureWarning,
    )
    tpe_arguments = "consider_prior|prior_weight|consider_magic_clip|consider_endpoints"
    warnings.filterwarnings(
        "ignore",
        message=rf"`({tpe_arguments}|warn_independent_sampling)` has been deprecated",
        category=FutureWarning,
    )
    warnings.filterwarnings(
        "ignore", message="'hydra/launcher/ray' is validated against ConfigStore"
    )
