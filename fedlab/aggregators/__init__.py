"""How the server combines the clients' updates: one module per aggregator (the ``aggregator``
config group). ``mean`` is FedAvg's example-weighted mean; ``median`` and ``trimmed_mean`` are
the robust, unweighted rules of Yin et al. 2018."""

from fedlab.aggregators.base import (
    AGGREGATORS,
    Aggregator,
    AggregatorConfig,
    Defence,
    build_aggregator,
)

__all__ = ["AGGREGATORS", "Aggregator", "AggregatorConfig", "Defence", "build_aggregator"]
