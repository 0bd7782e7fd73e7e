#!/usr/bin/env python
"""The L2 norms of the honest clients' updates, round by round: what the clipping defences'
thresholds (``aggregator=norm_bounding``'s ``max_norm``, ``centered_clipping``'s ``tau``) must be
set against, since they compare a norm to a fixed number.

Usage (from the repository root), with any run's overrides:

    ./.venv/bin/python scripts/update_norms.py experiment=byzantine rounds=20
    ./.venv/bin/python scripts/update_norms.py experiment=byzantine model=cnn --rounds-shown 1,10

It trains the config's rounds with the mean (whatever ``aggregator`` says: the honest path) and
prints, for the rounds asked, the median, smallest and largest norm of the round's updates
(all arrays of an update together, as the defences take it).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="the run's overrides")
    parser.add_argument("--rounds-shown", default="1,2,5,10,20", help="rounds to print")
    args = parser.parse_args()
    shown = {int(r) for r in args.rounds_shown.split(",")}

    import fedlab
    from fedlab.aggregators.mean import Mean
    from fedlab.backends import build_engine
    from fedlab.core.sampling import ClientSampler, local_order
    from fedlab.core.types import ClientWork
    from fedlab.experiment import dataset_parts

    cfg = fedlab.compose([*args.overrides, "aggregator=mean", "attack=none"])
    data, parts = dataset_parts(cfg)
    norms: list[list[float]] = []

    class Recording(Mean):
        def next_marked(self, state, updates, weights, malicious):
            norms.append(
                [
                    math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in u))
                    for u in updates
                ]  # fmt: skip
            )
            return super().next_marked(state, updates, weights, malicious)

    parts = dataclasses.replace(parts, aggregator=Recording(parts.aggregator.cfg))
    engine = build_engine(cfg.engine, parts)
    state = engine.initialize(parts.make_model().get_weights())
    sampler = ClientSampler(cfg.client_sampling, cfg.num_clients, cfg.clients_per_round, cfg.seed)
    print(f"{cfg.model.name}, {cfg.partition.name}, {cfg.clients_per_round} clients a round")
    try:
        for round_num in range(1, cfg.rounds + 1):
            work = []
            for c in sampler.sample(round_num):
                x, y = data.client_data(int(c))
                order = local_order(len(x), cfg.E, cfg.seed, round_num, int(c))
                work.append(ClientWork(x, y, order, cfg.B, int(c), None, round_num))
            state = engine.next(state, work).state
            if round_num in shown:
                n = norms[-1]
                print(
                    f"round {round_num}: median {np.median(n):.3f}, "
                    f"min {min(n):.3f}, max {max(n):.3f}"
                )
    finally:
        engine.close()


if __name__ == "__main__":
    main()
