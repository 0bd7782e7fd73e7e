"""The algorithm interface, with FedAvg's behaviour as every hook's default.

A round, as the engines run it (McMahan et al. 2017, Algorithm 1, generalised):

1. the server broadcasts the global model, and whatever ``client_inputs`` derives from the
   server's and the client's algorithm state (SCAFFOLD: the correction ``c - c_i``);
2. each client trains from the global weights with its own optimizer, one step per batch, on
   the gradient of its local objective, ``local_gradient`` (FedProx adds ``mu * (w - w_global)``);
3. it uploads its update ``initial - trained`` weights with its number of examples as weight,
   plus what ``client_result`` adds (SCAFFOLD: the change of its control variate), and keeps
   the per-client state ``client_result`` returns (keyed by client id, checkpointed);
4. the server's aggregator combines the updates (``fedlab.aggregators``), the server optimizer
   takes one step with the result, and ``server_update`` updates the algorithm's own server
   state from the uploads (SCAFFOLD: ``c``).

The hooks that run inside a client's training loop (``local_gradient``) receive TensorFlow
tensors and are traced once; the others get NumPy arrays. ``engine=tff`` runs TFF's own builder
for the algorithm, named by ``tff_builder``; an algorithm TFF does not have sets it to None and
is refused on that engine in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedlab.plugin import Plugin, PluginConfig, Registry

Arrays = list[np.ndarray]


@dataclass
class AlgorithmConfig(PluginConfig):
    """The keys every algorithm has; an algorithm with keys of its own extends it."""


class Algorithm(Plugin):
    """FedAvg (McMahan et al. 2017): every hook's default does what FedAvg does."""

    Config: ClassVar[type] = AlgorithmConfig
    #: TFF's ``tff.learning.algorithms`` builder for it (None: it does not run on engine=tff).
    tff_builder: ClassVar[str | None] = "build_weighted_fed_avg"
    #: The builder TFF uses with an unweighted aggregator (DP-FedAvg's, ``fedlab.privacy``).
    tff_unweighted_builder: ClassVar[str | None] = "build_unweighted_fed_avg"
    #: How many model-sized arrays go to each client, and come back, per round.
    broadcast_copies: ClassVar[int] = 1
    upload_copies: ClassVar[int] = 1
    #: How many model-shaped inputs ``client_inputs`` gives each client's training.
    num_client_inputs: ClassVar[int] = 0
    #: Whether the server state holds the client optimizer's hyperparameters, as TFF's
    #: ``build_weighted_fed_avg`` does (its client work's state); TFF's FedProx does not. The
    #: fast engine lays out its state as TFF's, so that checkpoints move between engines.
    client_hparams_in_state: ClassVar[bool] = True

    #: The hooks that change what FedAvg computes (TFF's FedAvg builder would not run them).
    _HOOKS: ClassVar[tuple[str, ...]] = (
        "initial_state",
        "client_inputs",
        "local_gradient",
        "client_result",
        "server_update",
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """An algorithm that overrides a hook but names no TFF builder of its own (a user's,
        from outside fedlab) runs on engine=fast only: TFF's FedAvg would ignore its hooks."""
        super().__init_subclass__(**kwargs)
        overrides = any(hook in cls.__dict__ for hook in cls._HOOKS)
        if overrides and "tff_builder" not in cls.__dict__ and "engines" not in cls.__dict__:
            cls.engines = ("fast",)
            cls.tff_builder = cls.tff_unweighted_builder = None
            cls.missing_on_tff = f"{cls.__qualname__} changes FedAvg and names no TFF builder"

    def __init__(self, cfg: Any, client_optimizer: Any, num_clients: int) -> None:
        self.cfg = cfg
        self.client_optimizer = client_optimizer
        self.num_clients = num_clients

    # -- configuration --------------------------------------------------------------------

    @classmethod
    def recipe_name(cls, cfg: Any, run: Any, server_name: str) -> str:
        """The name of the whole recipe, for the ``algorithm`` tag (``server_name``: what the
        server optimizer makes of FedAvg: FedAvg, FedAvgM, FedAdam, ...)."""
        return server_name

    def tff_arguments(self) -> dict[str, Any]:
        """Extra keyword arguments of ``tff_builder``."""
        return {}

    # -- state ------------------------------------------------------------------------------

    def initial_state(self, shapes: list[tuple[int, ...]]) -> dict[str, Arrays]:
        """The algorithm's own server state (beside the model and the server optimizer's)."""
        return {}

    # -- a client ---------------------------------------------------------------------------

    def client_inputs(
        self, state: dict[str, Arrays], client_state: Arrays | None, shapes: list[tuple[int, ...]]
    ) -> list[Arrays]:
        """``num_client_inputs`` model-shaped inputs of one client's training."""
        return []

    def local_gradient(self, grads: list, weights: list, initial: list, inputs: list) -> list:
        """The gradient of the local objective at ``weights`` (traced, TensorFlow tensors);
        ``grads`` is the data loss's gradient, ``initial`` the global weights."""
        return grads

    def client_result(
        self,
        update: Arrays,
        steps: int,
        inputs: list[Arrays],
        client_state: Arrays | None,
        state: dict[str, Arrays],
    ) -> tuple[dict[str, Arrays], Arrays | None]:
        """What a client uploads beside its update, and its new per-client state (None: keeps
        nothing). ``update`` is ``initial - trained``, ``steps`` the local steps it took. Runs
        only for clients whose update is finite."""
        return {}, None

    # -- the server -------------------------------------------------------------------------

    def server_update(
        self, state: dict[str, Arrays], uploads: list[dict[str, Arrays]]
    ) -> tuple[dict[str, Arrays], dict[str, float]]:
        """The algorithm's new server state from the finite clients' uploads, and its metrics
        (logged under ``algorithm/``)."""
        return state, {}


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm", "fedlab.algorithms", Algorithm)


def build_algorithm(cfg: Any, client_optimizer: Any, num_clients: int) -> Algorithm:
    """The algorithm ``cfg`` configures."""
    return ALGORITHMS.of(cfg)(cfg, client_optimizer, num_clients)
