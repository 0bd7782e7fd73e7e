#!/usr/bin/env python
"""The global L2 norms of the clients' local-step gradients in round 1: what
``client_optimizer.global_clipnorm`` (which clips each step's gradient) must be set against.

Usage (from the repository root), with any run's overrides:

    ./.venv/bin/python scripts/gradient_norms.py experiment=table2_shakespeare \
        client_optimizer.lr=2.94

It takes round 1's first ``--clients`` sampled clients (the run's sampler and local order), and
for each trains ``--steps`` local steps of plain SGD at the config's client rate from the initial
model, as the fast engine does (the same loss, padding masked), printing the percentiles of the
gradient norms before any clipping. Each client starts from the initial model, so the norms
show where the first steps take the model, where a large rate's gradients grow.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="the run's overrides")
    parser.add_argument("--clients", type=int, default=20, help="clients of round 1 to take")
    parser.add_argument("--steps", type=int, default=4, help="local steps of each client")
    args = parser.parse_args()

    import tensorflow as tf

    import fedlab
    from fedlab.backends.loss import batch_loss
    from fedlab.core.sampling import ClientSampler, local_order
    from fedlab.experiment import dataset_parts

    cfg = fedlab.compose(args.overrides)
    data, parts = dataset_parts(cfg)
    model = parts.make_model()
    weights = model.trainable_variables
    initial = [w.numpy() for w in weights]
    lr = cfg.client_optimizer.lr
    sampler = ClientSampler(cfg.client_sampling, cfg.num_clients, cfg.clients_per_round, cfg.seed)
    norms = []
    for c in sampler.sample(1)[: args.clients]:
        x, y = data.client_data(int(c))
        order = local_order(len(x), cfg.E, cfg.seed, 1, int(c)).reshape(-1)
        batch = cfg.B or len(x)
        for w, value in zip(weights, initial, strict=True):
            w.assign(value)
        for start in range(0, min(len(order), args.steps * batch), batch):
            idx = order[start : start + batch]
            with tf.GradientTape() as tape:
                loss, _, _ = batch_loss(model(x[idx]), y[idx], len(idx), parts.pad_label)
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, weights)]
            norms.append(float(tf.linalg.global_norm(grads)))
            for w, g in zip(weights, grads, strict=True):
                w.assign_sub(lr * g)
    p10, p50, p90 = np.percentile(norms, [10, 50, 90])
    print(
        f"{cfg.model.name}, client lr {lr}, B={cfg.B}: {len(norms)} steps of "
        f"{min(args.clients, cfg.clients_per_round)} clients; gradient norm 10th percentile "
        f"{p10:.3f}, median {p50:.3f}, 90th {p90:.3f}, max {max(norms):.3f}"
    )


if __name__ == "__main__":
    main()
