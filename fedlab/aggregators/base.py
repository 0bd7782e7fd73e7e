"""The aggregator interface: the finite clients' updates and weights in, one update out.

Aggregators are NumPy, run once a round on the server (the engines hand them the updates as
arrays). ``engine=tff`` uses TFF's aggregation factory named by ``tff_factory``
(``tff.aggregators``); one TFF 0.87 does not have sets it to None and is refused on that engine
in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from omegaconf import MISSING

from fedlab.registry import Registry

AGGREGATORS: Registry[type[Aggregator]] = Registry("aggregator", "fedlab.aggregators")


@dataclass
class AggregatorConfig:
    name: str = MISSING


class Aggregator:
    name: ClassVar[str]
    Config: ClassVar[type] = AggregatorConfig
    engines: ClassVar[tuple[str, ...]] = ("fast",)
    tff_factory: ClassVar[str | None] = None
    #: The paper's words for it, in the ``algorithm`` tag (None: not named there).
    label: ClassVar[str | None] = None

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @classmethod
    def min_clients(cls, cfg: Any) -> int:
        """The fewest clients a round must sample for this rule to be itself."""
        return 1

    @classmethod
    def check(cls, cfg: Any, run: Any) -> None:
        """Cross-field rules (the clients a round samples); raise ``ConfigError``."""
        from fedlab.config import ConfigError

        need, m = cls.min_clients(cfg), run.clients_per_round
        if m < need:
            raise ConfigError(
                f"aggregator={cls.name} needs at least {need} clients a round{cls._why(cfg)}, "
                f"and C={run.C} with num_clients={run.num_clients} samples {m}; "
                f"allowed: C*num_clients >= {need}"
            )

    @classmethod
    def _why(cls, cfg: Any) -> str:
        return ""

    def aggregate(self, updates: list[list[np.ndarray]], weights: list[float]) -> list[np.ndarray]:
        """One update from the clients' ``updates`` (each a list of arrays, model-shaped) and
        their ``weights`` (examples trained); every update here is finite."""
        raise NotImplementedError


def build_aggregator(cfg: Any) -> Aggregator:
    return AGGREGATORS.get(cfg.name)(cfg)
