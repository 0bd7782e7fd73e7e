"""Client sampling: m = max(C·K, 1) distinct clients at random each round, or the notebook's
cyclic slices; all a pure function of (seed, round)."""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.config import ClientSampling
from fedlab.core.sampling import ClientSampler, local_order


def test_uniform_draws_m_distinct_clients_reproducibly() -> None:
    sampler = ClientSampler(ClientSampling.uniform, num_clients=100, per_round=10, seed=3)
    rounds = [sampler.sample(r) for r in range(1, 51)]
    for chosen in rounds:
        assert len(chosen) == 10 and len(set(chosen.tolist())) == 10
        assert chosen.min() >= 0 and chosen.max() < 100
    again = ClientSampler(ClientSampling.uniform, num_clients=100, per_round=10, seed=3)
    assert all(np.array_equal(a, again.sample(r)) for r, a in enumerate(rounds, start=1))
    other = ClientSampler(ClientSampling.uniform, num_clients=100, per_round=10, seed=4)
    assert not all(np.array_equal(a, other.sample(r)) for r, a in enumerate(rounds, start=1))
    # Random, not cyclic: over 50 rounds nearly every client is seen, in varying company.
    seen = np.bincount(np.concatenate(rounds), minlength=100)
    assert (seen > 0).sum() >= 95
    assert len({tuple(c) for c in rounds}) == 50


@pytest.mark.parametrize(("per_round", "groups"), [(10, 10), (20, 5), (50, 2)])
def test_cyclic_is_the_notebooks_slicing(per_round: int, groups: int) -> None:
    sampler = ClientSampler(ClientSampling.cyclic, num_clients=100, per_round=per_round, seed=0)
    clients = np.arange(100)
    for round_num in range(1, 25):
        # The notebook, with 0-based rounds r and g = K / m groups: clients[r % g::g]
        chosen = sampler.sample(round_num)
        assert np.array_equal(chosen, clients[(round_num - 1) % groups :: groups])
        assert len(chosen) == per_round


def test_local_order_is_a_fresh_permutation_per_epoch() -> None:
    order = local_order(600, epochs=3, seed=0, round_num=7, client_id=42)
    assert order.shape == (3, 600)
    for epoch in order:
        assert np.array_equal(np.sort(epoch), np.arange(600))
    assert not np.array_equal(order[0], order[1])
    assert np.array_equal(order, local_order(600, 3, seed=0, round_num=7, client_id=42))
    assert not np.array_equal(order, local_order(600, 3, seed=0, round_num=8, client_id=42))
