"""FedPer (Arivazhagan, Aggarwal, Singh & Choudhary 2019, "Federated Learning with
Personalization Layers"), Algorithm 1.

The model is cut into base layers ``W_B``, shared by every client, and the top
``personal_layers`` layers ``W_P``, the personalization layers, of which each client ``j`` keeps
its own ``W_P,j``. In a round, each sampled client trains the pair ``(W_B, W_P,j)``, starting
from the round's global base and its own head, with its client optimizer over its E epochs of
batches (plain SGD on its loss ``F_j(W_B, W_P,j)``), and keeps the trained head; it uploads only
its base update, which the server aggregates as FedAvg does:

    (W_B,j, W_P,j) <- local training of F_j from (W_B^t, W_P,j)
    W_B^{t+1} = W_B^t - eta_g * sum_j n_j (W_B^t - W_B,j) / sum_j n_j   (server SGD; lr 1: the
                                                                       example-weighted mean)

(any aggregator or server optimizer of the run acts on the base). A client's head starts as the
global model's head the first time it is sampled (every client starts from the same initial
head, the paper's per-client initialisation). The global head is never updated: a client's head
update is replaced by zeros before it is aggregated (``client_upload``), and the aggregate's head
by zeros again after the aggregator (``server_aggregate``: DP-FedAvg's noise, say, does not reach
it), which every server optimizer of fedlab turns into no step at all.

``personal_layers`` counts the model's layers with weights from the output (``self.layer_of``,
``bind_model``): 1 keeps the output layer (the classifier), 2 the last two, and so on. Keeping
no layer is FedAvg, keeping every layer shares nothing: both are refused in one line, when the
config is composed for fedlab's own models (``LAYERS_WITH_WEIGHTS``; tests/test_fedper.py
checks each count against the built model), and when the engine is built for any other model.

``personal_model`` (personalized evaluation) is the global base with the client's head (the
global head for a client never sampled). The heads live in the client-state store
(``fedlab.core.client_state``, checkpointed). What a round communicates is the base both ways
(``shared``). TFF 0.87 has no FedPer: ``engine=fast`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedlab.algorithms.base import ALGORITHMS, Algorithm, AlgorithmConfig
from fedlab.errors import ConfigError

# How many layers with weights each of fedlab's models has (the engine's count, FunctionalModel
# .layer_of), for the refusal at compose time, before TensorFlow builds the model. A model not
# listed here (a user's) is checked when the engine is built.
LAYERS_WITH_WEIGHTS = {
    "logreg": 1,
    "2nn": 3,
    "cnn": 4,
    "emnist_cnn": 4,
    "cifar_cnn": 5,
    "char_lstm": 4,
    "resnet18_gn": 41,
}


@dataclass
class FedPerConfig(AlgorithmConfig):
    # How many of the model's top layers with weights each client keeps (the paper's
    # personalization layers); the rest, the base, is shared.
    personal_layers: int = 1

    def __post_init__(self) -> None:
        if self.personal_layers < 1:
            raise ConfigError(
                f"algorithm.personal_layers={self.personal_layers} keeps no layer (every layer "
                "shared is FedAvg); allowed: an integer >= 1, below the model's layers with "
                "weights"
            )


def _refuse_every_layer(personal: int, layers: int, model: str | None) -> ConfigError:
    which = f"model={model}" if model else "the model"
    allowed = (
        f"1 <= algorithm.personal_layers <= {layers - 1}"
        if layers > 1
        else "a model with more than one layer with weights"
    )
    return ConfigError(
        f"algorithm.personal_layers={personal} keeps every layer of {which} ({layers} with "
        f"weights), so no layer is shared; allowed: {allowed}"
    )


@ALGORITHMS.register("fedper")
class FedPer(Algorithm):
    Config = FedPerConfig
    engines = ("fast",)
    tff_builder = None
    tff_unweighted_builder = None
    missing_on_tff = "TFF 0.87 has no FedPer: each client keeps its own top layers"

    @classmethod
    def check(cls, cfg, run) -> None:
        super().check(cfg, run)
        layers = LAYERS_WITH_WEIGHTS.get(str(run.model.name))
        if layers is not None and cfg.personal_layers >= layers:
            raise _refuse_every_layer(cfg.personal_layers, layers, run.model.name)

    @classmethod
    def recipe_name(cls, cfg, run, server_name: str) -> str:
        return "FedPer" if server_name == "FedAvg" else f"FedPer with {server_name}"

    def bind_model(self, layer_of: tuple[int, ...]) -> None:
        super().bind_model(layer_of)
        layers = sorted(set(self.layer_of))
        personal = self.cfg.personal_layers
        if personal >= len(layers):
            raise _refuse_every_layer(personal, len(layers), None)
        kept = set(layers[-personal:])
        #: Which trainable arrays are the client's own (the head), in the model's order.
        self.head = [layer in kept for layer in self.layer_of]

    def shared(self) -> list[bool]:
        return [not own for own in self.head]

    def _with_head(self, weights, head):
        own = iter(head)
        return [next(own) if is_head else w for w, is_head in zip(weights, self.head, strict=True)]

    def client_start(self, weights, client_state):
        return weights if client_state is None else self._with_head(weights, client_state)

    def client_keep(self, start, update, client_state):
        return [s - u for s, u, own in zip(start, update, self.head, strict=True) if own]

    def client_upload(self, update, weight, steps, client_state):
        return self._zero_head(update), weight

    def server_aggregate(self, state, aggregate, uploads, weights):
        return self._zero_head(aggregate)

    def _zero_head(self, arrays):
        return [np.zeros_like(a) if own else a for a, own in zip(arrays, self.head, strict=True)]

    def personal_model(self, weights, client_state):
        return weights if client_state is None else self._with_head(weights, client_state)
