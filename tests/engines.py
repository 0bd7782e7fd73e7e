"""Engines built as a run builds them, for tests that drive them directly."""

from __future__ import annotations

import functools

from fedlab.aggregators import AGGREGATORS, build_aggregator
from fedlab.algorithms import ALGORITHMS
from fedlab.backends import RoundParts
from fedlab.data.mnist import Mnist
from fedlab.models import build_model
from fedlab.optimizers import build_optimizer
from fedlab.privacy.dp_fedavg import GaussianDpMean

MNIST_SHAPE = (Mnist.input_shape, Mnist.num_classes)


def mnist_model(name: str):
    """A fresh Keras model ``name`` for MNIST's digits."""
    return build_model(name, *MNIST_SHAPE)


def parts(
    model: str,
    client,
    server,
    algorithm: str = "fedavg",
    aggregator: str = "mean",
    num_clients: int = 100,
    algorithm_class: type | None = None,
    dp=None,
    clients_per_round: int = 10,
    compressor=None,
    model_options: dict | None = None,
    **keys,
) -> RoundParts:
    """``keys`` go to the algorithm's or the aggregator's config, whichever has them;
    ``algorithm_class`` replaces the registered class of ``algorithm`` (a variant under test);
    ``dp`` (a ``DpFedAvgConfig``) replaces the aggregator by DP-FedAvg's over
    ``clients_per_round``; ``compressor`` compresses the uploads (engine=fast);
    ``model_options``: the model's own keys (``model.dropout``)."""
    algo_cls = algorithm_class or ALGORITHMS.get(algorithm)
    agg_cls = AGGREGATORS.get(aggregator)
    algo_fields = set(algo_cls.Config.__dataclass_fields__)
    algo_cfg = algo_cls.Config(
        name=algorithm, **{k: v for k, v in keys.items() if k in algo_fields}
    )
    agg_cfg = agg_cls.Config(
        name=aggregator, **{k: v for k, v in keys.items() if k not in algo_fields}
    )
    client_optimizer = build_optimizer(client)
    return RoundParts(
        make_model=functools.partial(build_model, model, *MNIST_SHAPE, **(model_options or {})),
        input_shape=MNIST_SHAPE[0],
        num_classes=MNIST_SHAPE[1],
        client_optimizer=client_optimizer,
        server_optimizer=build_optimizer(server),
        algorithm=algo_cls(algo_cfg, client_optimizer, num_clients),
        aggregator=(
            build_aggregator(agg_cfg)
            if dp is None
            else GaussianDpMean(dp, clients_per_round, seed=0)
        ),
        compressor=compressor,
    )


def make_fast(model: str, client, server, parallel_clients: int | None = None, **kw):
    from fedlab.backends.fast import FastEngine

    p = parts(model, client, server, **kw)
    return FastEngine(
        p.make_model(),
        p.client_optimizer,
        p.server_optimizer,
        p.algorithm,
        p.aggregator,
        parallel_clients=parallel_clients,
        compressor=p.compressor,
    )


def make_tff(model: str, client, server, **kw):
    from fedlab.backends.tff import build

    return build(parts(model, client, server, **kw))
