"""The privacy interface: a mechanism that takes over the server's aggregation, and what it
spends.

A privacy option wraps the run's aggregator (``wrap``: ``none`` returns it unchanged; DP-FedAvg
replaces the weighted mean by a clipped, noised sum over the expected number of clients) and
accounts for the privacy each round spends (``epsilon(rounds)``: ε at the option's δ after that
many rounds, None without a guarantee). It is built from the whole run config: the accountant
needs the number of clients and how they are sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from fedlab.plugin import Plugin, PluginConfig, Registry


@dataclass
class PrivacyConfig(PluginConfig):
    """The keys every privacy option has; one with keys of its own extends it."""


class Privacy(Plugin):
    """No privacy: the aggregator as configured, and no ε."""

    Config: ClassVar[type] = PrivacyConfig
    #: The paper's name of the recipe with it (None: the algorithm's own name stands).
    label: ClassVar[str | None] = None

    def __init__(self, cfg: Any, run: Any) -> None:
        self.cfg = cfg
        self.run = run

    def wrap(self, aggregator: Any) -> Any:
        """The aggregator the engines use instead of the configured one."""
        return aggregator

    @property
    def delta(self) -> float | None:
        return None

    @property
    def target_epsilon(self) -> float | None:
        return None

    def epsilon(self, rounds: int) -> float | None:
        """ε at ``delta`` after ``rounds`` rounds; None: no guarantee is claimed."""
        return None

    def extra_metrics(self, rounds: int) -> dict[str, float]:
        """Other privacy measures after ``rounds`` rounds (logged beside ``privacy/epsilon``)."""
        return {}

    @classmethod
    def recipe_name(cls, name: str) -> str:
        """The recipe's name with this option (DP-FedAvg), from the algorithm's (FedAvg)."""
        return name


PRIVACY: Registry[type[Privacy]] = Registry("privacy", "fedlab.privacy", Privacy)


def build_privacy(run: Any) -> Privacy:
    """The privacy option of the run config ``run``."""
    return PRIVACY.of(run.privacy)(run.privacy, run)
