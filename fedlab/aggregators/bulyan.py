"""Bulyan (El Mhamdi, Guerraoui and Rouault 2018, "The Hidden Vulnerability of Distributed
Learning in Byzantium"): Krum applied recursively picks θ = n − 2f updates (each time Krum's
choice over the remaining ones is moved to the selection), then each coordinate of the result is
the mean of the β = θ − 2f selected values closest to that coordinate's median over the
selection. Both steps bound what f malicious updates can do: the selection keeps outliers out,
the coordinate-wise trimming around the median keeps each coordinate within the range of honest
values. It assumes n ≥ 4f + 3 (f null: ⌊(n − 3)/4⌋ each round; a round of fewer than 4f + 3
clients, or fewer than 7 with f null, is refused when the config is composed). Unweighted.
Logs ``aggregator/f``, ``aggregator/selected`` (θ) and, under attack,
``aggregator/selected_malicious``. Checked against Flower's ``aggregate_bulyan``
(``server/strategy/aggregate.py``: θ Krum picks with the same f on the shrinking set, then
``_aggregate_n_closest_weights`` around the selection's median with β = θ − 2f)."""

from __future__ import annotations

import math

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, flatten, unflatten
from fedlab.aggregators.krum import KrumBase, assumed_f, krum_scores, squared_distances


def tolerated(n: int) -> int:
    """The most malicious updates Bulyan tolerates among n: n >= 4f + 3."""
    return max(math.floor((n - 3) / 4), 0)


@AGGREGATORS.register("bulyan")
class Bulyan(KrumBase):
    label = "Bulyan"
    missing_on_tff = "TFF 0.87 has no Bulyan aggregator"
    factor = 4

    def select(self, state, updates, weights):
        n = len(updates)
        f = assumed_f(self.cfg, n, tolerated(n))
        theta = n - 2 * f
        beta = theta - 2 * f
        vectors = np.stack([flatten(u) for u in updates])
        distances = squared_distances(vectors)
        remaining, chosen = list(range(n)), []
        for _ in range(theta):
            sub = distances[np.ix_(remaining, remaining)]
            pick = remaining[int(np.argmin(krum_scores(sub, f)))]
            chosen.append(pick)
            remaining.remove(pick)
        picked = vectors[chosen]
        median = np.median(picked, axis=0)
        closest = np.argsort(np.abs(picked - median), axis=0, kind="stable")[:beta]
        aggregate = np.take_along_axis(picked, closest, axis=0).mean(axis=0)
        selected = np.zeros(n)
        selected[chosen] = 1
        return unflatten(aggregate, updates[0]), state, {"f": f}, {"selected": selected}
