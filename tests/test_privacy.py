"""DP-FedAvg (``fedlab/privacy/``): the fast engine against TFF's ``DifferentiallyPrivateFactory``
(without noise to float32 round-off, with noise by a statistical test of the noise), the
accountant against dp-accounting composed afresh and against the Gaussian mechanism's closed
form, ``privacy.target_epsilon`` ending a run, and the one-line refusals.

Tolerances as in tests/test_fast.py: both engines compute in float32 and differ only in the order
of additions, so weights agree to ``atol=1e-5`` after two rounds of server SGD (seen: ~1e-7).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from fedlab.privacy.dp_fedavg import (
    DpFedAvgConfig,
    GaussianDpMean,
    epsilon_after,
    sampling_event,
)
from tests.conftest import checked
from tests.engines import make_fast, make_tff, mnist_model
from tests.test_fast import O, opt

SIZES = (7, 13, 20, 9)  # four clients, of unequal sizes: DP-FedAvg ignores the sizes


@pytest.fixture(scope="module")
def tff_worker():
    from fedlab.backends.tff import LocalWorker

    with LocalWorker() as worker:
        yield worker


def _clients(seed: int, scale=(1.0, 1.0, 4.0, 0.05)) -> list[ClientWork]:
    """Clients whose updates have very different norms (features scaled), so that a clip of
    0.3 clips some and not others."""
    rng = np.random.default_rng(seed)
    made = []
    for i, (n, s) in enumerate(zip(SIZES, scale, strict=True)):
        x = rng.random((n, 784), dtype=np.float32) * np.float32(s)
        y = rng.integers(0, 10, n).astype(np.int32)
        made.append(ClientWork(x, y, rng.permutation(n)[None], 5, i))
    return made


def _initial():
    rng = np.random.default_rng(3)
    return [
        (rng.standard_normal(w.shape) * 0.05).astype(np.float32)
        for w in mnist_model("logreg").get_weights()
    ]


def _dp(**keys) -> DpFedAvgConfig:
    return DpFedAvgConfig(name="dp_fedavg", **keys)


CASES = {
    "fixed-clip": _dp(noise_multiplier=0.0, clip=0.3),
    "adaptive-clip": _dp(noise_multiplier=0.0, clip=0.3, target_quantile=0.5),
}


@pytest.mark.parametrize("dp", CASES.values(), ids=CASES.keys())
def test_dp_rounds_without_noise_equal_tffs_dp_factory(dp, tff_worker) -> None:
    sgd = opt(O.sgd, 0.1)
    server = opt(O.sgdm, 1.0)  # momentum: the second round depends on the first's aggregate
    m = 5  # the expected clients a round; 4 trained: the sum is divided by 5, not by 4
    tff_engine = make_tff("logreg", sgd, server, dp=dp, clients_per_round=m)
    fast = make_fast("logreg", sgd, server, parallel_clients=1, dp=dp, clients_per_round=m)
    initial = _initial()
    tff_state, fast_state = tff_engine.initialize(initial), fast.initialize(initial)
    fractions = []
    for round_num in (1, 2, 3):
        clients = _clients(round_num)
        tff_out, fast_out = tff_engine.next(tff_state, clients), fast.next(fast_state, clients)
        tff_state, fast_state = tff_out.state, fast_out.state
        for got, want in zip(
            fast.model_weights(fast_state), tff_engine.model_weights(tff_state), strict=True
        ):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(fast_out.train_loss, tff_out.train_loss, rtol=1e-5)
        assert fast_out.examples_trained == tff_out.examples_trained
        fractions.append(fast_out.aggregator_metrics["unclipped_fraction"])
        if dp.target_quantile is not None:
            # The next round's clip: the geometric update of Andrew et al., as TFF makes it.
            np.testing.assert_allclose(
                fast_out.aggregator_metrics["clip"], tff_out.aggregator_metrics["clip"], rtol=1e-6
            )
    assert min(fractions) > 0 and max(fractions) < 1  # some clipped, some not: clipping is seen
    moved = max(
        np.abs(a - b).max() for a, b in zip(fast.model_weights(fast_state), initial, strict=True)
    )
    assert moved > 1e-3
    if dp.target_quantile is not None:
        assert fast_state.aggregator["clip"] != np.float32(dp.clip)  # the clip did adapt


def _added_noise(make, dp_noisy, dp_quiet, m, rounds=1):
    """The noise one round adds to the global model: the same round from the same weights with
    and without noise, server SGD of lr 1, so the weights differ by exactly the noise over m.
    Round r > 1 (fast engine only) starts from the same weights with the noise counter at r-1."""
    import dataclasses

    sgd, server = opt(O.sgd, 0.1), opt(O.sgd, 1.0)
    noisy = make("logreg", sgd, server, dp=dp_noisy, clients_per_round=m)
    quiet = make("logreg", sgd, server, dp=dp_quiet, clients_per_round=m)
    draws = []
    for round_num in range(1, rounds + 1):
        clients = _clients(round_num)
        noisy_state = noisy.initialize(_initial())
        if round_num > 1:
            noisy_state = dataclasses.replace(
                noisy_state, aggregator={"noise_round": np.int64(round_num - 1)}
            )
        a = noisy.model_weights(noisy.next(noisy_state, clients).state)
        b = quiet.model_weights(quiet.next(quiet.initialize(_initial()), clients).state)
        draws.append(np.concatenate([(y - x).ravel() for x, y in zip(a, b, strict=True)]))
    return draws


@pytest.mark.parametrize("engine", ["fast", "tff"])
def test_the_added_noise_has_mean_zero_and_std_z_clip_over_m(engine, request) -> None:
    """The noise on the mean is N(0, (z S / m)^2) in every one of the n = 7,850 coordinates.

    Test: with sigma = z S / m, reject if |mean| > 4 sigma / sqrt(n) or if the sample std is
    more than 4 / sqrt(2 n) (relative) from sigma (the sample std of n normals has relative
    standard error 1 / sqrt(2 n) = 0.008). False-alarm rate: two two-sided 4-standard-error
    tests, about 2 * 6.3e-5 = 1.3e-4. Power: a std off by 10% (dividing by m - 1 or m + 1 here,
    or noise std z * S * 1.1) is 12 standard errors away: detected with probability > 1 - 1e-20;
    a mean of 0.1 sigma is 8.9 standard errors away: detected with probability > 1 - 1e-6.
    Noise added to the mean instead of the sum (std off by m = 5) or not at all fails by far.
    """
    if engine == "tff":
        request.getfixturevalue("tff_worker")
    m, z, clip = 5, 1.5, 0.3
    make = make_tff if engine == "tff" else make_fast
    rounds = 1 if engine == "tff" else 2
    draws = _added_noise(
        make, _dp(noise_multiplier=z, clip=clip), _dp(noise_multiplier=0.0, clip=clip), m, rounds
    )
    sigma = z * clip / m
    for noise in draws:
        n = noise.size
        assert n == 7850
        assert abs(noise.mean()) <= 4 * sigma / math.sqrt(n), noise.mean()
        assert abs(noise.std() / sigma - 1) <= 4 / math.sqrt(2 * n), noise.std() / sigma
    if len(draws) > 1:
        # A new draw every round: two rounds' noise are uncorrelated (|r| < 4/sqrt(n)).
        assert abs(np.corrcoef(draws[0], draws[1])[0, 1]) < 4 / math.sqrt(draws[0].size)


def test_the_fast_noise_is_seeded_by_the_run_and_round() -> None:
    agg = GaussianDpMean(_dp(noise_multiplier=1.0, clip=1.0), 3, seed=7)
    updates = [[np.ones(4, np.float32)], [np.zeros(4, np.float32)]]
    state = agg.initial_state()
    first, state1, _ = agg.next(state, updates, [1.0, 1.0])
    again, _, _ = agg.next(state, updates, [1.0, 1.0])
    second, _, _ = agg.next(state1, updates, [1.0, 1.0])
    np.testing.assert_array_equal(first[0], again[0])  # resuming redraws the same noise
    assert not np.array_equal(first[0], second[0])  # the next round draws new noise
    other, _, _ = GaussianDpMean(_dp(noise_multiplier=1.0, clip=1.0), 3, seed=8).next(
        state, updates, [1.0, 1.0]
    )
    assert not np.array_equal(first[0], other[0])


def test_clipping_bounds_each_client_and_ignores_its_examples() -> None:
    agg = GaussianDpMean(_dp(noise_multiplier=0.0, clip=1.0), 4, seed=0)
    big = [np.array([30.0, 40.0], np.float32)]  # norm 50: clipped to (0.6, 0.8)
    small = [np.array([0.3, 0.0], np.float32)]  # norm 0.3: kept
    mean, _, metrics = agg.next(agg.initial_state(), [big, small], [1000.0, 1.0])
    np.testing.assert_allclose(mean[0], [(0.6 + 0.3) / 4, 0.8 / 4], rtol=1e-6)
    assert metrics["unclipped_fraction"] == 0.5


# -- accounting --------------------------------------------------------------------------------


@pytest.mark.parametrize(("rounds", "k", "m", "z"), [(1, 100, 10, 1.0), (7, 50, 5, 1.3)])
def test_epsilon_equals_dp_accountings_accountant_composed_afresh(rounds, k, m, z) -> None:
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    accountant.compose(sampling_event(k, m, z), rounds)
    want = accountant.get_epsilon(1e-5)
    assert epsilon_after(rounds, k, m, z, 1e-5) == pytest.approx(want, rel=1e-9)


def test_epsilon_with_every_client_sampled_is_the_gaussian_mechanisms_at_sensitivity_2s() -> None:
    """m = K: no sampling, so a round is the Gaussian mechanism with noise z S on a sum whose
    replace-one sensitivity is 2 S: RDP alpha / (2 (z/2)^2) per round (Mironov 2017)."""
    from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS, compute_epsilon

    z, rounds, delta = 2.0, 5, 1e-5
    orders = np.array(DEFAULT_RDP_ORDERS)
    rdp = rounds * orders / (2 * (z / 2) ** 2)
    want, _ = compute_epsilon(orders, rdp, delta)
    assert epsilon_after(rounds, 20, 20, z, delta) == pytest.approx(want, rel=1e-9)
    # At noise z (sensitivity S, the add/remove figure) it would be 4 times smaller in RDP.
    assert epsilon_after(rounds, 20, 20, z, delta) > compute_epsilon(orders, rdp / 4, delta)[0]


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    eps = [epsilon_after(r, 100, 10, 1.0, 1e-5) for r in (1, 2, 10, 100)]
    assert eps == sorted(eps) and eps[0] > 0
    assert epsilon_after(10, 100, 10, 2.0, 1e-5) < epsilon_after(10, 100, 10, 1.0, 1e-5)
    assert epsilon_after(10, 100, 5, 1.0, 1e-5) < epsilon_after(10, 100, 10, 1.0, 1e-5)
    assert epsilon_after(0, 100, 10, 1.0, 1e-5) == 0.0
    assert epsilon_after(3, 100, 10, 0.0, 1e-5) == math.inf


DP_RUN = [
    "privacy=dp_fedavg", "model=logreg", "client_optimizer=sgd", "client_optimizer.lr=0.1",
    "server_optimizer=sgd", "num_clients=20", "C=0.25", "B=50", "tracking=none",
    "checkpoint_every=0", "privacy.noise_multiplier=2.0",
]  # fmt: skip


def test_target_epsilon_ends_the_run_before_the_round_that_would_exceed_it(
    tmp_path, compose_cfg
) -> None:
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    eps = [epsilon_after(r, 20, 5, 2.0, 1e-5) for r in (1, 2, 3, 4)]
    target = (eps[2] + eps[3]) / 2  # three rounds fit, the fourth would not
    cfg = checked(*DP_RUN, "rounds=10", f"privacy.target_epsilon={target}")
    tracker = RecordingTracker()
    result = run(cfg, output_dir=tmp_path, tracker=tracker, progress=False)
    assert result.rounds == 3
    logged = [tracker.metrics[("privacy/epsilon", r)] for r in (1, 2, 3)]
    assert logged == pytest.approx(eps[:3], rel=1e-12)
    assert ("privacy/epsilon", 4) not in tracker.metrics
    assert 0 < tracker.metrics[("privacy/epsilon_poisson", 3)] < logged[2]
    assert f"privacy spent ε={eps[2]:.4g} at δ=1e-05" in result.summary()


def test_without_privacy_nothing_is_logged_or_printed(tmp_path, compose_cfg) -> None:
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    cfg = checked(*DP_RUN[1:-1], "rounds=1")
    tracker = RecordingTracker()
    result = run(cfg, output_dir=tmp_path, tracker=tracker, progress=False)
    assert not any(key.startswith("privacy/") for key, _ in tracker.metrics)
    assert "privacy" not in result.summary() and result.epsilon is None


# -- bad input ---------------------------------------------------------------------------------

BAD = [
    (["privacy.noise_multiplier=-1"], ["privacy.noise_multiplier=-1", ">= 0"]),
    (["privacy.delta=0"], ["privacy.delta=0", "0 < delta < 1"]),
    (["privacy.delta=1"], ["privacy.delta=1", "0 < delta < 1"]),
    (["privacy.clip=0"], ["privacy.clip=0", "> 0"]),
    (["privacy.target_quantile=1.5"], ["privacy.target_quantile=1.5", "0 < q < 1"]),
    (["client_sampling=cyclic"], ["client_sampling=cyclic", "amplification", "uniform"]),
    (["aggregator=median"], ["aggregator=median", "allowed: aggregator=mean"]),
    (["aggregator=trimmed_mean"], ["aggregator=trimmed_mean", "allowed: aggregator=mean"]),
    (["privacy.clip_learning_rate=0.5"], ["clip_learning_rate=0.5", "no effect"]),
    (
        ["privacy.target_quantile=0.5", "privacy.noise_multiplier=2", "C=0.1"],
        ["clipped_count_stddev > 1", "0.05 * 10"],
    ),
    (["privacy.target_epsilon=0.01"], ["target_epsilon=0.01 is spent by the first round"]),
]


@pytest.mark.parametrize(("overrides", "words"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_privacy_input_is_one_line(compose_cfg, overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        checked("privacy=dp_fedavg", *overrides)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def test_dp_composes_on_both_engines_with_the_mean(compose_cfg) -> None:
    for engine in ("fast", "tff"):
        cfg = checked("privacy=dp_fedavg", f"engine={engine}")
        assert cfg.privacy.noise_multiplier == 1.0 and cfg.privacy.delta == 1e-5


def test_the_report_draws_accuracy_against_epsilon(tmp_path) -> None:
    from fedlab.report import Report, RunSeries, group, write
    from fedlab.report.privacy import PRIVACY_FIGURE, privacy_curve

    def series(run_id: str, z: str, seed: str, acc: float) -> RunSeries:
        eps = {r: epsilon_after(r, 100, 10, float(z), 1e-5) for r in (1, 2, 3)}
        return RunSeries(
            run_id, run_id, {"privacy.noise_multiplier": z, "seed": seed, "privacy.delta": "1e-05"},
            {0: 0.1, 1: acc, 2: acc + 0.1, 3: acc + 0.2}, {}, None, eps,
        )  # fmt: skip

    runs = [
        series("a", "1.0", "0", 0.5),
        series("b", "1.0", "1", 0.6),
        series("c", "2.0", "0", 0.3),
    ]
    configurations = group(runs, ["privacy.noise_multiplier"])
    assert [c.label for c in configurations] == [
        "privacy.noise_multiplier=1.0",
        "privacy.noise_multiplier=2.0",
    ]
    eps, acc = privacy_curve(configurations[0])
    assert eps == pytest.approx([epsilon_after(r, 100, 10, 1.0, 1e-5) for r in (1, 2, 3)])
    assert acc == pytest.approx([0.55, 0.65, 0.75])  # the mean over the two seeds; round 0 has no ε
    files = write(Report("test", configurations, []), tmp_path)
    assert tmp_path / PRIVACY_FIGURE in files and (tmp_path / PRIVACY_FIGURE).stat().st_size > 0
