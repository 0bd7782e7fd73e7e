"""Which clients take part in a round (McMahan et al. 2017, Algorithm 1: "S_t ← random set of m
clients", m = max(C·K, 1)).

Each round's choice is a pure function of (seed, round): no generator state carries from one round
to the next, so round r samples the same clients however the run got there.
"""

from __future__ import annotations

import numpy as np

from fedlab import streams
from fedlab.config import ClientSampling


class ClientSampler:
    """``uniform``: m clients drawn without replacement each round, as in the paper.
    ``cyclic``: the seed notebook's ``clients[r % g::g]`` with g = K // m groups."""

    def __init__(self, kind: ClientSampling, num_clients: int, per_round: int, seed: int) -> None:
        if not 1 <= per_round <= num_clients:
            raise ValueError(f"clients per round {per_round} must be in [1, {num_clients}]")
        self.kind = kind
        self.num_clients = num_clients
        self.per_round = per_round
        self.seed = seed

    def sample(self, round_num: int) -> np.ndarray:
        """Client ids for round ``round_num`` (1-based), sorted."""
        if self.kind is ClientSampling.cyclic:
            groups = self.num_clients // self.per_round
            return np.arange(self.num_clients)[(round_num - 1) % groups :: groups]
        rng = streams.sampling(self.seed, round_num)
        return np.sort(rng.choice(self.num_clients, size=self.per_round, replace=False))


def local_order(
    num_examples: int, epochs: int, seed: int, round_num: int, client_id: int
) -> np.ndarray:
    """The order in which a client visits its examples: one fresh permutation per local epoch,
    shape ``(epochs, num_examples)``, a pure function of (seed, round, client)."""
    rng = streams.client_order(seed, round_num, client_id)
    return np.stack([rng.permutation(num_examples) for _ in range(epochs)])
