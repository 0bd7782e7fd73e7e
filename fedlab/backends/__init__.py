"""The engines that compute a run's rounds, chosen by ``engine=``.

- ``fast`` (``fedlab.backends.fast``): the algorithm in fedlab's process, plain TensorFlow;
- ``tff`` (``fedlab.backends.tff``): TFF 0.87's own builders, in TFF's worker process. It is the
  only package that imports tensorflow_federated, and is imported only when chosen.

Both build from the same ``RoundParts`` (made from a config by ``fedlab.experiment.round_parts``)
and meet the ``fedlab.core.types.Engine`` protocol; each
package has ``build(parts)`` and ``runtime(worker_env, log_path)`` (what must run around the
rounds: TFF's worker for ``tff``, nothing for ``fast``). ``open_placement`` starts what
``placement=ray`` trains ``fast``'s clients on (``fedlab.backends.fast.placement``); Ray is
imported only then.

TFF and Ray are optional (the extras ``[tff]`` and ``[cluster]`` of pyproject.toml): without them,
choosing ``engine=tff`` or ``placement=ray`` is one line naming the extra (``check_installed``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedlab.aggregators import Aggregator
from fedlab.algorithms import Algorithm
from fedlab.errors import NotInstalledError
from fedlab.optimizers import Optimizer

# engine name -> the package that implements it (imported on use: TFF costs seconds).
BACKENDS = {"fast": "fedlab.backends.fast", "tff": "fedlab.backends.tff"}

DISTRIBUTION = "fedlab-hydra"  # pyproject.toml's [project] name, which the extras belong to
# A choice -> the module it imports, what that is, the extra that installs it, and the choice
# that needs no extra.
OPTIONAL = {
    "engine=tff": ("tensorflow_federated", "TensorFlow Federated", "tff", "engine=fast"),
    "placement=ray": ("ray", "Ray", "cluster", "placement=local"),
}


def check_installed(choice: str) -> None:
    """Raise ``NotInstalledError`` (one line naming the extra) if ``choice`` (``engine=tff``)
    needs a package this environment lacks; other choices need nothing beyond the base."""
    if choice not in OPTIONAL:
        return
    module, what, extra, instead = OPTIONAL[choice]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        found = False
    if not found:
        raise NotInstalledError(
            f"{choice} needs {what}, which is not installed here: pip install "
            f"'{DISTRIBUTION}[{extra}]'; allowed without it: {instead}"
        )


@dataclass(frozen=True)
class RoundParts:
    """Everything an engine is built from, decided by the run's config."""

    make_model: Callable[[], Any]  # a fresh Keras model of the run's model
    input_shape: tuple[int, ...]
    num_classes: int
    client_optimizer: Optimizer
    server_optimizer: Optimizer
    algorithm: Algorithm
    aggregator: Aggregator
    privacy: Any = None  # fedlab.privacy.Privacy: what the rounds spend (its accountant)
    compressor: Any = None  # fedlab.compression.Compressor of the clients' uploads (None: none)
    # A target per example (()) or per position ((80,)); pad_label: fedlab.backends.loss.
    target_shape: tuple[int, ...] = ()
    pad_label: int | None = None
    seed: int = 0  # the run's seed: engine=fast seeds its dropout from it (and round, client)
    # The run's fedlab.attacks.Attack: its malicious clients' uploads and collusion (None: none).
    attack: Any = None
    # Where the clients train: None here; a fedlab.backends.fast.placement.RayPlacement.
    placement: Any = None


def _backend(engine: Any):
    check_installed(f"engine={engine}")
    return importlib.import_module(BACKENDS[str(engine)])


def build_engine(engine: Any, parts: RoundParts):
    """The engine ``engine`` names, built from ``parts``."""
    return _backend(engine).build(parts)


def engine_runtime(
    engine: Any, worker_env: dict[str, str], log_path: Path
) -> contextlib.AbstractContextManager:
    """What must run around the rounds of ``engine``."""
    return _backend(engine).runtime(worker_env, log_path)


@contextlib.contextmanager
def open_placement(
    cfg: Any, dataset: Any, dataset_parts: Callable[[Any], tuple[Any, RoundParts]]
) -> Iterator[Any]:
    """The placement ``cfg.placement`` chooses for the run's ``dataset``, stopped on leaving:
    None for ``placement=local`` (the engine trains in this process; Ray is not imported).
    ``dataset_parts(cfg)`` is how another process builds the run's data and parts from the
    config (``fedlab.experiment.dataset_parts``: a Ray actor calls it)."""
    if str(cfg.placement.name) != "ray":
        yield None
        return
    check_installed("placement=ray")
    from fedlab.backends.fast.placement import RayPlacement

    placement = RayPlacement(cfg, dataset, dataset_parts)
    try:
        yield placement
    finally:
        placement.close()
