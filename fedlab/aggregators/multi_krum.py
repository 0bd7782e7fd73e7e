"""Multi-Krum (Blanchard et al. 2017, §5): Krum's scores (``fedlab.aggregators.krum``), then the
unweighted mean of the ``keep`` updates of least score (the paper's m; null: n − f, the most
honest updates there can be). It interpolates between Krum (keep 1) and the mean (keep n), and
assumes what Krum does: n > 2f + 2 (f null: ⌊(n − 3)/2⌋ each round; a round of fewer than
2f + 3 clients, or fewer than 5 with f null, is refused when the config is composed). Logs
``aggregator/f``, ``aggregator/kept`` and, under attack, ``aggregator/kept_malicious``. Flower's
``aggregate_krum`` with ``to_keep`` averages the kept updates weighted by examples; the paper's
is unweighted, as here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedlab.aggregators.base import AGGREGATORS, flatten
from fedlab.aggregators.krum import (
    KrumBase,
    KrumConfig,
    assumed_f,
    krum_scores,
    squared_distances,
    tolerated,
)
from fedlab.errors import ConfigError


@dataclass
class MultiKrumConfig(KrumConfig):
    keep: int | None = None  # how many of least score are averaged; null: n - f

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keep is not None and self.keep < 1:
            raise ConfigError(
                f"aggregator.keep={self.keep} is invalid; allowed: null (n - f) or an integer >= 1"
            )


@AGGREGATORS.register("multi_krum")
class MultiKrum(KrumBase):
    Config = MultiKrumConfig
    label = "Multi-Krum"
    missing_on_tff = "TFF 0.87 has no Multi-Krum aggregator"

    @classmethod
    def check(cls, cfg, run) -> None:
        super().check(cfg, run)
        m = run.clients_per_round
        if cfg.keep is not None and cfg.keep > m:
            raise ConfigError(
                f"aggregator.keep={cfg.keep} is more than the {m} clients a round samples; "
                f"allowed: 1 <= keep <= {m}, or null (n - f)"
            )

    def select(self, state, updates, weights):
        n = len(updates)
        f = assumed_f(self.cfg, n, tolerated(n))
        keep = min(self.cfg.keep or n - f, n)
        scores = krum_scores(squared_distances(np.stack([flatten(u) for u in updates])), f)
        best = np.argsort(scores, kind="stable")[:keep]
        kept = np.zeros(n)
        kept[best] = 1
        mean = [
            np.mean([updates[i][k] for i in best], axis=0, dtype=np.float64).astype(np.float32)
            for k in range(len(updates[0]))
        ]
        return mean, state, {"f": f}, {"kept": kept}
