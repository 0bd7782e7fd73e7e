"""The aggregator interface: the finite clients' updates and weights in, one update out.

Aggregators are NumPy, run once a round on the server (the engines hand them the updates as
arrays). ``engine=tff`` uses TFF's aggregation factory named by ``tff_factory`` (a dotted name
under ``tff.aggregators``, called with ``tff_arguments()``); one TFF 0.87 does not have sets it
to None and is refused on that engine in one line.

An aggregator may keep server state between rounds (DP-FedAvg's adaptive clipping norm,
``fedlab.privacy``): ``initial_state`` and ``next``; the fast engine keeps it in its server
state, so that it is checkpointed with the model. The default is stateless: ``next`` calls
``aggregate``.

An aggregator that is a sum over the clients (``summable``: the mean, DP-FedAvg's clipped sum)
can also be computed in slices, as ``placement=ray`` does (``fedlab.backends.fast.placement``):
each slice of the cohort folds its clients into a partial sum (``accumulate``, where the clients
train), and the server combines the slices' partial sums in slice order (``combine``). It equals
``next`` over every update up to the order of float32 additions, and bit for bit with one slice.
The coordinate-wise median and trimmed mean need every update, so they are not summable.

Under an attack (``fedlab.attacks``) the engine tells the aggregator which updates came from
malicious clients (``next_marked``), for its log only: a defence that used it would be an oracle.
A defence that decides per update (``Defence``: Krum keeps some, clipping rules clip some)
returns what it decided as masks, and logs each mask's count under ``aggregator/`` (``kept``,
``clipped``, ...) and, under attack, how many of those were malicious (``kept_malicious``).
Each robust rule states how many malicious clients f it tolerates (``honest_majority``: it
assumes fewer than half; ``min_clients``: the smallest round it is itself in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedlab.errors import ConfigError
from fedlab.plugin import Plugin, PluginConfig, Registry


@dataclass
class AggregatorConfig(PluginConfig):
    """The keys every aggregator has; one with keys of its own extends it."""


class Aggregator(Plugin):
    Config: ClassVar[type] = AggregatorConfig
    engines: ClassVar[tuple[str, ...]] = ("fast",)
    tff_factory: ClassVar[str | None] = None
    #: Whether TFF's factory is weighted (the mean) or unweighted (DP's clipped sum): TFF
    #: builds the algorithm with ``tff_builder`` or ``tff_unweighted_builder`` accordingly.
    tff_weighted: ClassVar[bool] = True
    #: The paper's words for it, in the ``algorithm`` tag (None: not named there).
    label: ClassVar[str | None] = None
    #: Whether it is a sum over the clients, computable in slices (``accumulate``/``combine``).
    summable: ClassVar[bool] = False
    #: Whether it assumes an honest majority (a malicious fraction of 1/2 or more breaks it by
    #: construction, and ``fedlab.attacks`` refuses such a run).
    honest_majority: ClassVar[bool] = False

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @classmethod
    def min_clients(cls, cfg: Any) -> int:
        """The fewest clients a round must sample for this rule to be itself: 3 for a rule that
        assumes an honest majority (of two, no majority is honest), else 1."""
        return 3 if cls.honest_majority else 1

    @classmethod
    def check(cls, cfg: Any, run: Any) -> None:
        """Cross-field rules (the clients a round samples); raise ``ConfigError``."""
        need, m = cls.min_clients(cfg), run.clients_per_round
        if m < need:
            raise ConfigError(
                f"aggregator={cls.name} needs at least {need} clients a round{cls._why(cfg)}, "
                f"and C={run.C} with num_clients={run.num_clients} samples {m}; "
                f"allowed: C*num_clients >= {need}"
            )

    @classmethod
    def _why(cls, cfg: Any) -> str:
        return " (an honest majority needs at least 3)" if cls.honest_majority else ""

    def tff_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``tff_factory``."""
        return {}

    def aggregate(self, updates: list[list[np.ndarray]], weights: list[float]) -> list[np.ndarray]:
        """One update from the clients' ``updates`` (each a list of arrays, model-shaped) and
        their ``weights`` (examples trained); every update here is finite."""
        raise NotImplementedError

    def bind_shapes(self, shapes: list[tuple[int, ...]]) -> None:
        """The model's trainable shapes, given by the engine before ``initial_state`` (a state
        shaped like the model: centered clipping's center)."""

    def initial_state(self) -> dict[str, np.ndarray]:
        """The aggregator's own server state (empty: stateless)."""
        return {}

    def next(
        self, state: dict[str, np.ndarray], updates: list[list[np.ndarray]], weights: list[float]
    ) -> tuple[list[np.ndarray] | None, dict[str, np.ndarray], dict[str, float]]:
        """The combined update, the new state, and metrics (logged under ``aggregator/``)."""
        return self.aggregate(updates, weights), state, {}

    def next_marked(
        self,
        state: dict[str, np.ndarray],
        updates: list[list[np.ndarray]],
        weights: list[float],
        malicious: list[bool] | None,
    ) -> tuple[list[np.ndarray] | None, dict[str, np.ndarray], dict[str, float]]:
        """``next``, told which updates came from malicious clients (one flag per update; None
        without an attack): for the aggregator's log only. The default ignores it."""
        return self.next(state, updates, weights)

    # -- in slices (summable aggregators) ------------------------------------------------

    def accumulate(
        self, state: dict[str, np.ndarray], partial: Any, update: list[np.ndarray], weight: float
    ) -> Any:
        """``partial`` (None before a slice's first finite client) with one more client folded
        in; the same for every client of every slice, given the round's ``state``."""
        raise NotImplementedError(f"aggregator={self.name} needs every update; it is not a sum")

    def combine(
        self, state: dict[str, np.ndarray], partials: list[Any]
    ) -> tuple[list[np.ndarray] | None, dict[str, np.ndarray], dict[str, float]]:
        """What ``next`` returns, from the slices' partial sums in slice order (each from at
        least one finite client; an empty list: no finite client this round)."""
        raise NotImplementedError(f"aggregator={self.name} needs every update; it is not a sum")

    def combine_marked(
        self, state: dict[str, np.ndarray], partials: list[Any], malicious: list[bool] | None
    ) -> tuple[list[np.ndarray] | None, dict[str, np.ndarray], dict[str, float]]:
        """``combine``, told which of the finite clients folded into ``partials`` (in the order
        they were folded, slice after slice) were malicious; for its log only, as
        ``next_marked``. The default ignores it."""
        return self.combine(state, partials)


class Defence(Aggregator):
    """A robust rule that decides per update: ``select`` returns the combined update, the new
    state, its metrics and what it decided as one value per update (``{"kept": mask}``,
    ``{"clipped": mask}``, or a share such as a weight). Each decision is logged as its sum
    (``aggregator/kept``) and, under attack, as its sum over the malicious clients' updates
    (``aggregator/kept_malicious``)."""

    def select(
        self, state: dict[str, np.ndarray], updates: list[list[np.ndarray]], weights: list[float]
    ) -> tuple[list[np.ndarray] | None, dict[str, np.ndarray], dict[str, float], dict[str, Any]]:
        raise NotImplementedError

    def next(self, state, updates, weights):
        return self.next_marked(state, updates, weights, None)

    def next_marked(self, state, updates, weights, malicious):
        if not updates:
            return None, state, {}
        aggregate, new_state, metrics, decisions = self.select(state, updates, weights)
        metrics = dict(metrics)
        flags = None if malicious is None else np.asarray(malicious, bool)
        for key, values in decisions.items():
            values = np.asarray(values, np.float64)
            metrics[key] = float(values.sum())
            if flags is not None:
                metrics[f"{key}_malicious"] = float(values[flags].sum())
        return aggregate, new_state, metrics


def flatten(update: list[np.ndarray]) -> np.ndarray:
    """One update as one float64 vector (its arrays in order), for distances and norms."""
    return np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in update])


def unflatten(vector: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """``vector`` cut back into arrays shaped like ``like``, as float32."""
    out, start = [], 0
    for a in like:
        size = int(np.prod(a.shape))
        out.append(vector[start : start + size].reshape(a.shape).astype(np.float32))
        start += size
    return out


AGGREGATORS: Registry[type[Aggregator]] = Registry("aggregator", "fedlab.aggregators", Aggregator)


def build_aggregator(cfg: Any) -> Aggregator:
    return AGGREGATORS.of(cfg)(cfg)
