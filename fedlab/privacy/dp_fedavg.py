"""DP-FedAvg: client-level differential privacy (McMahan et al. 2018, "Learning Differentially
Private Recurrent Language Models"), as TFF 0.87's ``DifferentiallyPrivateFactory`` computes it.

Each round, every sampled client's update ``u_k`` is clipped to L2 norm ``S`` (the whole update,
all tensors together, as ``tf.clip_by_global_norm``), the clipped updates are summed, Gaussian
noise of standard deviation ``z * S`` is added to every coordinate, and the sum is divided by the
number of clients a round samples, ``m`` (unweighted: a client's examples do not buy it weight,
which would raise the sensitivity). The server optimizer then steps with that noised mean as it
would with FedAvg's.

With ``target_quantile`` the clip adapts (Andrew et al. 2021, "Differentially Private Learning
with Adaptive Clipping", geometric update): each round the server also receives a noised count of
the clients whose update norm was at most ``S`` (noise std ``clipped_count_stddev``, default
``0.05 m``), and sets ``S <- S * exp(-lr * (unclipped fraction - target_quantile))``. That count
costs privacy too, so the updates get the larger noise multiplier
``(z^-2 - (2 clipped_count_stddev)^-2)^-1/2`` and the whole round still has multiplier ``z``.

Accounting (``epsilon``): Google's ``dp-accounting`` RDP accountant with
``SampledWithoutReplacementDpEvent(K, m, GaussianDpEvent(z / 2))`` under the replace-one
neighbouring relation. That is how fedlab samples (``client_sampling=uniform``: m distinct clients
of K, uniformly, every round independently: a fixed-size sample without replacement, which makes
the number of participants public, so neighbouring datasets replace one client's data by
another's). Under replace-one the clipped sum's L2 sensitivity is ``2S`` (one clipped update
swapped for another), so the noise ``z S`` is ``z / 2`` sensitivities: the event's multiplier.
The bound is Wang, Balle and Kasiviswanathan 2019 (Theorem 27); RDP to (ε, δ) is the accountant's
conversion, an upper bound. RDP, not PLD: dp-accounting's PLD accountant has no event for
sampling without replacement, and the usual ``PoissonSampledDpEvent(m/K)`` models a sampling
fedlab does not do (its ε under add/remove adjacency is smaller; it is logged beside, as
``privacy/epsilon_poisson``, for comparison with papers that report it). Cyclic sampling picks
clients on a fixed schedule, so there is no amplification by sampling: DP is refused with it.

What this module does not claim: NumPy's and TensorFlow's Gaussian samplers are not
cryptographically secure, and floating-point noise is known to leak (Mironov 2012); this is a
simulation for research, as TFF's is.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedlab import streams
from fedlab.aggregators.base import Aggregator
from fedlab.privacy.base import PRIVACY, Privacy, PrivacyConfig


@dataclass
class DpFedAvgConfig(PrivacyConfig):
    noise_multiplier: float = 1.0  # z: the noise std is z times the clipping norm
    clip: float = 1.0  # S; with target_quantile, the initial value of the adaptive clip
    target_quantile: float | None = None  # null: fixed clip
    clip_learning_rate: float = 0.2  # adaptive: the geometric update's learning rate
    clipped_count_stddev: float | None = None  # adaptive: null is 0.05 * clients per round
    delta: float = 1e-5
    target_epsilon: float | None = None  # end the run before a round would spend more

    def __post_init__(self) -> None:
        from fedlab.errors import ConfigError

        def require(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        z = self.noise_multiplier
        require(
            z >= 0 and math.isfinite(z),
            f"privacy.noise_multiplier={z} is invalid; allowed: a finite number >= 0",
        )
        require(
            self.clip > 0 and math.isfinite(self.clip),
            f"privacy.clip={self.clip} is invalid; allowed: a finite number > 0",
        )
        q = self.target_quantile
        require(
            q is None or 0 < q < 1,
            f"privacy.target_quantile={q} is invalid; allowed: null (fixed clip) or 0 < q < 1",
        )
        require(
            0 < self.delta < 1,
            f"privacy.delta={self.delta} is invalid; allowed: 0 < delta < 1",
        )
        require(
            self.clip_learning_rate >= 0 and math.isfinite(self.clip_learning_rate),
            f"privacy.clip_learning_rate={self.clip_learning_rate} is invalid; allowed: >= 0",
        )
        s = self.clipped_count_stddev
        require(
            s is None or s >= 0,
            f"privacy.clipped_count_stddev={s} is invalid; allowed: null or a number >= 0",
        )
        t = self.target_epsilon
        require(
            t is None or t > 0,
            f"privacy.target_epsilon={t} is invalid; allowed: null or a number > 0",
        )
        for key, applies in (("clip_learning_rate", 0.2), ("clipped_count_stddev", None)):
            value = getattr(self, key)
            require(
                q is not None or value == applies,
                f"privacy.{key}={value} has no effect with a fixed clip; it applies to "
                "adaptive clipping (privacy.target_quantile=0.5, say)",
            )


def noise_parameters(cfg: DpFedAvgConfig, clients_per_round: int) -> tuple[float, float]:
    """(the noise multiplier of the updates, the std of the noise on the unclipped count), as
    TFF's ``adaptive_clip_noise_params`` sets them; a fixed clip spends everything on updates."""
    z = cfg.noise_multiplier
    if cfg.target_quantile is None:
        return z, 0.0
    if z == 0:
        return 0.0, cfg.clipped_count_stddev or 0.0
    count_stddev = cfg.clipped_count_stddev
    if count_stddev is None:
        count_stddev = 0.05 * clients_per_round
    if z >= 2 * count_stddev:
        return math.nan, count_stddev  # refused by DpFedAvg.check
    return (z**-2 - (2 * count_stddev) ** -2) ** -0.5, count_stddev


# Rényi orders: dp-accounting's defaults.
def _orders() -> list[float]:
    from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS

    return list(DEFAULT_RDP_ORDERS)


def sampling_event(num_clients: int, clients_per_round: int, noise_multiplier: float):
    """One round as dp-accounting's event: m of K clients without replacement, a Gaussian
    mechanism of ``z / 2`` sensitivities (replace-one doubles the clipped sum's sensitivity)."""
    import dp_accounting

    return dp_accounting.SampledWithoutReplacementDpEvent(
        num_clients, clients_per_round, dp_accounting.GaussianDpEvent(noise_multiplier / 2)
    )


@functools.lru_cache(maxsize=16)
def _rdp_of_one_round(num_clients: int, clients_per_round: int, z: float) -> tuple[float, ...]:
    """The RDP of one round at each order. Rounds compose additively in RDP, so ε after r
    rounds is the conversion of r times this; composing r events afresh each round would cost
    the accountant's ~2 s every round (tests/test_privacy.py checks it equals that)."""
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(
        _orders(), dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    accountant.compose(sampling_event(num_clients, clients_per_round, z))
    return tuple(float(v) for v in accountant._rdp)  # no public getter in dp-accounting 0.4


def epsilon_after(
    rounds: int, num_clients: int, clients_per_round: int, noise_multiplier: float, delta: float
) -> float:
    """ε at ``delta`` after ``rounds`` rounds of DP-FedAvg as fedlab samples clients."""
    if rounds <= 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    rdp = np.asarray(_rdp_of_one_round(num_clients, clients_per_round, noise_multiplier))
    eps, _ = compute_epsilon(_orders(), rounds * rdp, delta)
    return float(eps)


def poisson_epsilon_after(
    rounds: int, num_clients: int, clients_per_round: int, noise_multiplier: float, delta: float
) -> float:
    """ε if clients were Poisson-sampled with probability m/K (add/remove adjacency): what
    TFF's DP tutorial and many papers report; not fedlab's sampling, for comparison only."""
    if rounds <= 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(_orders())
    event = dp_accounting.PoissonSampledDpEvent(
        clients_per_round / num_clients, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    accountant.compose(event, rounds)
    return float(accountant.get_epsilon(delta))


@PRIVACY.register("dp_fedavg")
class DpFedAvg(Privacy):
    Config = DpFedAvgConfig

    @classmethod
    def check(cls, cfg, run) -> None:
        from fedlab.errors import ConfigError

        if str(run.client_sampling) != "uniform":
            raise ConfigError(
                f"privacy=dp_fedavg with client_sampling={run.client_sampling}: cyclic sampling "
                "picks clients on a fixed schedule, so there is no amplification by sampling to "
                "account for; allowed: client_sampling=uniform"
            )
        if run.aggregator.name != "mean":
            raise ConfigError(
                f"privacy=dp_fedavg with aggregator={run.aggregator.name}: DP-FedAvg's guarantee "
                "is for the clipped, noised sum over the clients, which replaces the mean; "
                f"aggregator={run.aggregator.name} is not a sum; allowed: aggregator=mean"
            )
        m = run.clients_per_round
        value, count_stddev = noise_parameters(cfg, m)
        if math.isnan(value):
            raise ConfigError(
                f"privacy.noise_multiplier={cfg.noise_multiplier} with adaptive clipping needs "
                f"privacy.clipped_count_stddev > {cfg.noise_multiplier / 2:g} (it is "
                f"{count_stddev:g}; null means 0.05 * {m} clients a round); allowed: a larger "
                "clipped_count_stddev, more clients a round, or a smaller noise_multiplier"
            )
        if cfg.target_epsilon is not None:
            first = epsilon_after(1, run.num_clients, m, cfg.noise_multiplier, cfg.delta)
            if first > cfg.target_epsilon:
                raise ConfigError(
                    f"privacy.target_epsilon={cfg.target_epsilon} is spent by the first round "
                    f"(ε={first:.3g} at delta={cfg.delta:g}); allowed: a target above "
                    f"{first:.3g}, or a larger privacy.noise_multiplier"
                )

    @classmethod
    def recipe_name(cls, name: str) -> str:
        return f"DP-{name}"

    def wrap(self, aggregator: Aggregator) -> Aggregator:
        return GaussianDpMean(self.cfg, self.run.clients_per_round, self.run.seed)

    @property
    def delta(self) -> float:
        return self.cfg.delta

    @property
    def target_epsilon(self) -> float | None:
        return self.cfg.target_epsilon

    def epsilon(self, rounds: int) -> float:
        run = self.run
        return epsilon_after(
            rounds, run.num_clients, run.clients_per_round, self.cfg.noise_multiplier, self.delta
        )

    def extra_metrics(self, rounds: int) -> dict[str, float]:
        run = self.run
        eps = poisson_epsilon_after(
            rounds, run.num_clients, run.clients_per_round, self.cfg.noise_multiplier, self.delta
        )
        return {"privacy/epsilon_poisson": eps}


def _global_norm(update: list[np.ndarray]) -> np.float32:
    return np.sqrt(np.float32(sum(np.sum(np.square(a), dtype=np.float32) for a in update)))


class GaussianDpMean(Aggregator):
    """The clipped, noised, unweighted mean of DP-FedAvg (TFF's ``NormalizedQuery`` over a
    ``GaussianSumQuery`` or a ``QuantileAdaptiveClipSumQuery``), with its state: the adaptive
    clip, and a counter that seeds each round's noise (so a resumed run draws what a straight
    one draws)."""

    name = "dp_fedavg"
    engines = ("fast", "tff")
    summable = True
    tff_weighted = False  # unweighted: TFF runs build_unweighted_fed_avg with it

    def __init__(self, cfg: DpFedAvgConfig, clients_per_round: int, seed: int) -> None:
        super().__init__(cfg)
        self.clients_per_round = clients_per_round
        self.seed = seed
        self.adaptive = cfg.target_quantile is not None
        self.value_noise, self.count_stddev = noise_parameters(cfg, clients_per_round)
        self.tff_factory = (
            "DifferentiallyPrivateFactory.gaussian_adaptive"
            if self.adaptive
            else "DifferentiallyPrivateFactory.gaussian_fixed"
        )

    def tff_arguments(self) -> dict[str, Any]:
        cfg, m = self.cfg, float(self.clients_per_round)
        if not self.adaptive:
            return {"noise_multiplier": float(cfg.noise_multiplier), "clients_per_round": m,
                    "clip": float(cfg.clip)}  # fmt: skip
        return {
            "noise_multiplier": float(cfg.noise_multiplier),
            "clients_per_round": m,
            "initial_l2_norm_clip": float(cfg.clip),
            "target_unclipped_quantile": float(cfg.target_quantile),
            "learning_rate": float(cfg.clip_learning_rate),
            "clipped_count_stddev": (
                None if cfg.clipped_count_stddev is None else float(cfg.clipped_count_stddev)
            ),
        }

    def initial_state(self) -> dict[str, np.ndarray]:
        state = {"noise_round": np.int64(0)}
        if self.adaptive:
            state["clip"] = np.float32(self.cfg.clip)
        return state

    def next(self, state, updates, weights):
        partial = None
        for update, weight in zip(updates, weights, strict=True):
            partial = self.accumulate(state, partial, update, weight)
        return self.combine(state, [partial])

    # In slices (placement=ray): each client is clipped where it trains, with the round's clip
    # (from the server's state); only the clipped sums and counts travel, and the noise is drawn
    # once, on the server, from the same generator.

    def _clip(self, state) -> np.float32:
        return np.float32(state["clip"] if self.adaptive else self.cfg.clip)

    def accumulate(self, state, partial, update, weight):
        clip, one = self._clip(state), np.float32(1.0)
        if partial is None:
            partial = ([np.zeros_like(a) for a in update], 0, 0)
        sums, unclipped, clients = partial
        norm = _global_norm(update)
        # tf.clip_by_global_norm's scale, to the float32 bit (a zero update: 1/0 = inf).
        with np.errstate(divide="ignore"):
            scale = clip * np.minimum(one / norm, one / clip)
        sums = [s + u * scale for s, u in zip(sums, update, strict=True)]
        return sums, unclipped + int(norm <= clip), clients + 1

    def combine(self, state, partials):
        if not partials:
            return None, state, {}
        clip = self._clip(state)
        rng = streams.dp_noise(self.seed, int(state["noise_round"]))
        m = np.float32(self.clients_per_round)
        sums, unclipped, clients = partials[0]
        for more, more_unclipped, more_clients in partials[1:]:
            sums = [s + t for s, t in zip(sums, more, strict=True)]
            unclipped, clients = unclipped + more_unclipped, clients + more_clients
        stddev = np.float32(float(clip) * self.value_noise)
        if stddev > 0:
            sums = [s + (rng.standard_normal(s.shape) * stddev).astype(np.float32) for s in sums]
        mean = [s / m for s in sums]
        new_state = {"noise_round": np.int64(int(state["noise_round"]) + 1)}
        metrics = {"unclipped_fraction": unclipped / clients}
        if self.adaptive:
            # TFF's QuantileEstimatorQuery: a noised count of (unclipped - 1/2) over m, + 1/2.
            below = np.float32(unclipped - 0.5 * clients)
            if self.count_stddev > 0:
                below = np.float32(below + rng.standard_normal() * self.count_stddev)
            fraction = np.clip(below / m + np.float32(0.5), 0.0, 1.0).astype(np.float32)
            step = np.float32(self.cfg.clip_learning_rate) * (
                fraction - np.float32(self.cfg.target_quantile)
            )
            new_state["clip"] = np.float32(clip * np.exp(-step))
            metrics["clip"] = float(new_state["clip"])
        return mean, new_state, metrics
