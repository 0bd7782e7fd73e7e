"""The engines that compute a run's rounds, chosen by ``engine=``.

- ``fast`` (``fedlab.backends.fast``): the algorithm in fedlab's process, plain TensorFlow;
- ``tff`` (``fedlab.backends.tff``): TFF 0.87's own builders, in TFF's worker process. It is the
  only package that imports tensorflow_federated, and is imported only when chosen.

Both build from the same ``RoundParts`` and meet the ``fedlab.core.types.Engine`` protocol; each
package has ``build(parts)`` and ``runtime(worker_env, log_path)`` (what must run around the
rounds: TFF's worker for ``tff``, nothing for ``fast``). ``open_placement`` starts what
``placement=ray`` trains ``fast``'s clients on (``fedlab.backends.fast.placement``); Ray is
imported only then.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedlab.aggregators import Aggregator, build_aggregator
from fedlab.algorithms import Algorithm, build_algorithm
from fedlab.optimizers import Optimizer, build_optimizer

# engine name -> the package that implements it (imported on use: TFF costs seconds).
BACKENDS = {"fast": "fedlab.backends.fast", "tff": "fedlab.backends.tff"}


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
    # Where the clients train: None here; a fedlab.backends.fast.placement.RayPlacement.
    placement: Any = None


def round_parts(
    cfg: Any,
    input_shape: tuple[int, ...],
    num_classes: int,
    target_shape: tuple[int, ...] = (),
    pad_label: int | None = None,
) -> RoundParts:
    """The parts ``cfg`` (a ``RunConfig``) chooses, for a dataset of this shape and classes."""
    from fedlab.compression import build_compressor
    from fedlab.models import build_model, model_options
    from fedlab.privacy import build_privacy

    client = build_optimizer(cfg.client_optimizer)
    privacy = build_privacy(cfg)
    return RoundParts(
        make_model=functools.partial(
            build_model, cfg.model.name, input_shape, num_classes, **model_options(cfg.model)
        ),
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        client_optimizer=client,
        server_optimizer=build_optimizer(cfg.server_optimizer),
        algorithm=build_algorithm(cfg.algorithm, client, cfg.num_clients),
        # The privacy option takes over the aggregation (DP-FedAvg) or leaves it as it is.
        aggregator=privacy.wrap(build_aggregator(cfg.aggregator)),
        privacy=privacy,
        compressor=build_compressor(cfg.compression, cfg.seed),
        target_shape=tuple(target_shape),
        pad_label=pad_label,
        seed=cfg.seed,
    )


def _backend(engine: Any):
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
def open_placement(cfg: Any, dataset: Any) -> Iterator[Any]:
    """The placement ``cfg.placement`` chooses for the run's ``dataset``, stopped on leaving:
    None for ``placement=local`` (the engine trains in this process; Ray is not imported)."""
    if str(cfg.placement.name) != "ray":
        yield None
        return
    from fedlab.backends.fast.placement import RayPlacement

    placement = RayPlacement(cfg, dataset)
    try:
        yield placement
    finally:
        placement.close()
