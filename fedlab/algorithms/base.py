"""The algorithm interface, with FedAvg's behaviour as every hook's default.

A round, as the engines run it (McMahan et al. 2017, Algorithm 1, generalised), with the hook
that decides each step (pfl-research and fedjax hand an algorithm both ends of the round too):

1. the server broadcasts the global model, and whatever ``client_inputs`` derives from the
   server's and the client's algorithm state (SCAFFOLD: the correction ``c - c_i``);
2. each client trains from ``client_start`` (the global weights; FedPer: with its own head) with
   its own optimizer, one step per batch, on the gradient of its local objective,
   ``local_gradient`` (FedProx adds ``mu * (w - w_global)``);
3. ``client_result`` says what it uploads beside its update ``start - trained`` (SCAFFOLD: the
   change of its control variate) and what it keeps (per-client state, keyed by client id,
   checkpointed); ``client_keep`` may keep part of the trained weights too (FedPer: its head,
   which it started from its own or, the first time, the global one); an algorithm with a
   ``personal`` model trains that too, from ``personal_start`` on ``personal_gradient``
   (Ditto), and keeps it with ``personal_state``;
4. ``client_upload`` transforms the update and its weight (the examples trained) before they are
   aggregated (FedNova normalises by the local steps; FedPer keeps only the shared layers);
5. the server's aggregator combines the updates (``fedlab.aggregators``); ``server_aggregate``
   acts on the result, given each client's upload and weight (FedNova scales it by the effective
   steps, the weighted mean of the clients' local steps); the server optimizer takes one step;
   ``server_update`` updates the algorithm's own server state from the uploads (SCAFFOLD's
   ``c``, FedDyn's ``h``); ``server_model`` acts on the new global model (FedDyn: ``- h/alpha``).

``personal_model`` is a client's own model for personalized evaluation (None: the global one).
``shared`` says which weight arrays a client shares (all by default); ``self.layer_of`` gives
each array's layer (``bind_model``), for an algorithm that keeps some layers per client.

The hooks that run inside a client's training loop (``local_gradient``, ``personal_gradient``)
receive TensorFlow tensors and are traced once; the others get NumPy arrays. Every default is
FedAvg's and returns what it was given unchanged, so FedAvg's numbers do not depend on them.
``engine=tff`` runs TFF's own builder for the algorithm, named by ``tff_builder``; an algorithm
TFF does not have sets it to None and is refused on that engine in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedlab.errors import ConfigError
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

    #: Whether each client also trains a personal model of its own (Ditto): ``personal_start``,
    #: ``personal_gradient``, ``personal_state``.
    personal: ClassVar[bool] = False
    #: Whether its server step only makes sense on a sum of the updates (FedNova's and FedDyn's
    #: do): a robust aggregator (median, trimmed mean) is refused with it.
    needs_mean: ClassVar[bool] = False

    #: The hooks that change what FedAvg computes (TFF's FedAvg builder would not run them).
    _HOOKS: ClassVar[tuple[str, ...]] = (
        "initial_state",
        "client_start",
        "client_inputs",
        "local_gradient",
        "client_result",
        "client_upload",
        "client_keep",
        "personal_start",
        "personal_gradient",
        "personal_state",
        "server_aggregate",
        "server_update",
        "server_model",
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
        self.layer_of: tuple[int, ...] = ()  # each trainable array's layer (bind_model)

    def bind_model(self, layer_of: tuple[int, ...]) -> None:
        """The model the algorithm runs on: for each trainable weight array, the position of its
        layer among the layers with weights (the engine calls this once it has the model)."""
        self.layer_of = tuple(layer_of)

    def shared(self) -> list[bool]:
        """Which trainable arrays a client shares with the server (all, but FedPer's head)."""
        return [True] * len(self.layer_of)

    # -- configuration --------------------------------------------------------------------

    @classmethod
    def check(cls, cfg: Any, run: Any) -> None:
        """Cross-field rules against the whole run config; raise ``ConfigError``. By default: an
        algorithm whose server step needs the mean of the updates refuses a robust aggregator."""
        if cls.needs_mean:
            from fedlab.aggregators import AGGREGATORS

            aggregator = AGGREGATORS.of(run.aggregator)
            if not aggregator.summable:
                summable = [n for n, a in AGGREGATORS.items() if a.summable]
                raise ConfigError(
                    f"algorithm={cfg.name} with aggregator={run.aggregator.name}: its server "
                    "step is built on the (weighted) mean of the updates, which a robust "
                    f"aggregator replaces; allowed: aggregator={'|'.join(summable)}"
                )

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

    def client_start(self, weights: Arrays, client_state: Arrays | None) -> Arrays:
        """The weights a client starts its local training from: the global ``weights`` (the
        same list, unchanged), or with parts of its own (FedPer's head)."""
        return weights

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
        nothing). ``update`` is ``start - trained``, ``steps`` the local steps it took. Runs
        only for clients whose update is finite."""
        return {}, None

    def client_keep(
        self, start: Arrays, update: Arrays, client_state: Arrays | None
    ) -> Arrays | None:
        """The state a client keeps after its local training, from the weights it started from
        (``client_start``'s) and its ``update`` (``start - trained``, so the trained weights are
        ``start - update``); ``client_state`` is what ``client_result`` returned (default:
        that). Runs only for clients whose update is finite."""
        return client_state

    def client_upload(
        self, update: Arrays, weight: float, steps: int, client_state: Arrays | None
    ) -> tuple[Arrays, float]:
        """The update and weight the aggregator gets (default: as trained, weighted by the
        examples trained). ``client_state`` is the state the client started the round with."""
        return update, weight

    # -- a client's personal model (``personal = True``) -------------------------------------

    def personal_start(self, weights: Arrays, client_state: Arrays | None) -> Arrays:
        """Where a client's personal model starts this round: its stored one (in
        ``client_state``), or the global ``weights`` the first time."""
        return weights

    def personal_gradient(self, grads: list, weights: list, global_weights: list) -> list:
        """The gradient of the personal objective at ``weights`` (traced; Ditto adds
        ``lambda * (v - w_global)``); ``global_weights`` is the round's global model."""
        return grads

    def personal_state(self, personal: Arrays, client_state: Arrays | None) -> Arrays | None:
        """The client's state to keep, with its trained ``personal`` model (``client_state``
        is what ``client_result`` returned)."""
        return client_state

    def personal_model(self, weights: Arrays, client_state: Arrays | None) -> Arrays | None:
        """A client's own model for personalized evaluation, from the global ``weights`` and
        its stored state; None: the global model is every client's (FedAvg)."""
        return None

    # -- the server -------------------------------------------------------------------------

    def server_aggregate(
        self,
        state: dict[str, Arrays],
        aggregate: Arrays,
        uploads: list[dict[str, Arrays]],
        weights: list[float],
    ) -> Arrays:
        """The aggregate the server optimizer steps with (default: the aggregator's, the same
        list). ``uploads``: what the finite clients uploaded beside their updates; ``weights``:
        the weight each of them was aggregated with (``client_upload``'s), in the same order
        (FedNova's effective steps are a weighted mean over the clients)."""
        return aggregate

    def server_update(
        self, state: dict[str, Arrays], uploads: list[dict[str, Arrays]]
    ) -> tuple[dict[str, Arrays], dict[str, float]]:
        """The algorithm's new server state from the finite clients' uploads, and its metrics
        (logged under ``algorithm/``)."""
        return state, {}

    def server_model(self, state: dict[str, Arrays], weights: Arrays) -> Arrays:
        """The new global model, from the server optimizer's ``weights`` and the algorithm's new
        ``state`` (default: the same list)."""
        return weights


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm", "fedlab.algorithms", Algorithm)


def build_algorithm(cfg: Any, client_optimizer: Any, num_clients: int) -> Algorithm:
    """The algorithm ``cfg`` configures."""
    return ALGORITHMS.of(cfg)(cfg, client_optimizer, num_clients)
