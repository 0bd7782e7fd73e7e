"""Aggregators (``fedlab/aggregators/``): each against NumPy on hand-made updates; a client that
sends a huge update breaks the mean and not the median or the trimmed mean; their one-line
refusals; and every algorithm x aggregator x engine combination runs a round or is refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedlab.aggregators import AGGREGATORS, build_aggregator
from fedlab.algorithms import ALGORITHMS
from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from tests.conftest import CONF, checked, run_cli
from tests.engines import make_fast, mnist_model
from tests.test_fast import O, opt


def _aggregator(name: str, **keys):
    return build_aggregator(AGGREGATORS.get(name).Config(name=name, **keys))


def _updates(values: list[list[float]]) -> list[list[np.ndarray]]:
    """One update per client: a 2-vector and a 2x2 matrix, from four numbers each."""
    return [[np.array(v[:2], np.float32), np.array(v, np.float32).reshape(2, 2)] for v in values]


HAND_MADE = [[1, -2, 3, 0], [2, 0, -1, 5], [10, 4, 0, 1], [-3, 1, 2, 2], [0, 0, 7, -4]]
WEIGHTS = [1.0, 3.0, 2.0, 5.0, 4.0]


def test_mean_is_the_example_weighted_mean() -> None:
    got = _aggregator("mean").aggregate(_updates(HAND_MADE), WEIGHTS)
    values = np.array(HAND_MADE, np.float64)
    want = (values * np.array(WEIGHTS)[:, None]).sum(axis=0) / sum(WEIGHTS)
    np.testing.assert_allclose(got[1].ravel(), want, rtol=1e-6)
    np.testing.assert_allclose(got[0], want[:2], rtol=1e-6)


def test_median_is_coordinate_wise_and_unweighted() -> None:
    got = _aggregator("median").aggregate(_updates(HAND_MADE), WEIGHTS)
    want = np.median(np.array(HAND_MADE, np.float64), axis=0)  # weights play no part
    np.testing.assert_array_equal(got[1].ravel(), want.astype(np.float32))
    np.testing.assert_array_equal(got[0], want[:2].astype(np.float32))
    even = _aggregator("median").aggregate(_updates(HAND_MADE[:4]), WEIGHTS[:4])
    np.testing.assert_array_equal(even[1].ravel(), np.median(HAND_MADE[:4], axis=0))


@pytest.mark.parametrize(("beta", "cut"), [(0.2, 1), (0.39, 1), (0.4, 2)])
def test_trimmed_mean_cuts_floor_beta_m_from_each_end(beta: float, cut: int) -> None:
    got = _aggregator("trimmed_mean", beta=beta).aggregate(_updates(HAND_MADE), WEIGHTS)
    ordered = np.sort(np.array(HAND_MADE, np.float64), axis=0)
    want = ordered[cut : len(HAND_MADE) - cut].mean(axis=0)
    np.testing.assert_allclose(got[1].ravel(), want, rtol=1e-6)
    assert got[1].dtype == np.float32


def _client(i: int, n: int, scale: float = 1.0) -> ClientWork:
    rng = np.random.default_rng(i)
    x = rng.random((n, 784), dtype=np.float32) * np.float32(scale)
    y = rng.integers(0, 10, n).astype(np.int32)
    return ClientWork(x, y, rng.permutation(n)[None], 4, i)


@pytest.mark.parametrize(
    ("name", "keys"), [("mean", {}), ("median", {}), ("trimmed_mean", {"beta": 0.2})]
)
def test_one_huge_update_breaks_the_mean_and_not_the_robust_rules(name, keys) -> None:
    honest = [_client(i, 12) for i in range(4)]
    attacker = _client(9, 12, scale=1e4)  # features 10^4 times larger: a huge update
    sgd = opt(O.sgd, 0.1)
    engine = make_fast("logreg", sgd, sgd, parallel_clients=1, aggregator=name, **keys)
    initial = mnist_model("logreg").get_weights()
    state = engine.initialize(initial)
    without = engine.model_weights(engine.next(state, honest).state)
    with_it = engine.model_weights(engine.next(state, [*honest, attacker]).state)
    moved = max(np.abs(a - b).max() for a, b in zip(with_it, without, strict=True))
    honest_step = max(np.abs(a - b).max() for a, b in zip(without, initial, strict=True))
    if name == "mean":
        assert moved > 100 * honest_step  # one client drags the mean anywhere it likes
    else:
        assert moved < 2 * honest_step  # the robust rules stay where the honest clients are


# -- bad input --------------------------------------------------------------------------------

BAD = [
    (["aggregator=trimmed_mean", "aggregator.beta=0.5"], ["aggregator.beta=0.5", "0 < beta < 0.5"]),
    (["aggregator=trimmed_mean", "aggregator.beta=0"], ["aggregator.beta=0", "0 < beta < 0.5"]),
    (
        ["aggregator=trimmed_mean", "C=0.0"],
        ["aggregator=trimmed_mean needs at least 10 clients a round", "samples 1", ">= 10"],
    ),
    (["aggregator=median", "C=0.02"], ["aggregator=median needs at least 3", "samples 2"]),
    (["aggregator=median", "engine=tff"], ["aggregator=median", "engine=tff", "engine=fast"]),
    (["aggregator=mean", "aggregator.beta=0.1"], ["aggregator.beta=0.1", "trimmed_mean"]),
]


@pytest.mark.parametrize(("overrides", "words"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_aggregator_input_is_one_line(compose_cfg, tmp_path, overrides, words) -> None:
    if any(o.startswith("aggregator.beta=0.1") for o in overrides):
        # Hydra refuses a key the option's YAML lacks before fedlab sees it: the CLI says it.
        result = run_cli(*overrides, cwd=tmp_path, timeout=120)
        assert result.returncode == 2
        message = result.stderr.strip()
    else:
        with pytest.raises(ConfigError) as info:
            checked(*overrides)
        message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


# -- every combination ------------------------------------------------------------------------

COMBINATIONS = list(
    itertools.product(
        [p.stem for p in sorted((CONF / "algorithm").glob("*.yaml"))],
        [p.stem for p in sorted((CONF / "aggregator").glob("*.yaml"))],
        ["fast", "tff"],
    )
)
# The 2NN: a model of more than one layer, of which FedPer keeps the top one.
QUICK_RUN = [
    "model=2nn", "client_optimizer=sgd", "client_optimizer.lr=0.1", "server_optimizer=sgd",
    "num_clients=200", "C=0.05", "B=50", "rounds=1", "tracking=none", "checkpoint_every=0",
]  # fmt: skip


def test_the_combinations_are_every_registered_option() -> None:
    assert {a for a, _, _ in COMBINATIONS} == set(ALGORITHMS.names())
    assert {g for _, g, _ in COMBINATIONS} == set(AGGREGATORS.names())


@pytest.mark.parametrize(
    ("algorithm", "aggregator", "engine"),
    [pytest.param(*c, marks=[pytest.mark.slow] if c[2] == "tff" else []) for c in COMBINATIONS],
    ids=[f"{a}-{g}-{e}" for a, g, e in COMBINATIONS],
)
def test_every_combination_runs_a_round_or_is_refused_in_one_line(
    compose_cfg, tmp_path, algorithm, aggregator, engine
) -> None:
    from fedlab.experiment import run

    overrides = [*QUICK_RUN, f"algorithm={algorithm}", f"aggregator={aggregator}"]
    # A server step built on the mean of the updates (FedNova's, FedDyn's) has no meaning with
    # a robust aggregator: refused on either engine (Algorithm.needs_mean).
    meaningless = ALGORITHMS.get(algorithm).needs_mean and not AGGREGATORS.get(aggregator).summable
    try:
        cfg = checked(*overrides, f"engine={engine}")
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and "allowed" in message, message
        assert engine == "tff" or meaningless, f"engine=fast runs everything else: {message}"
        return
    assert not meaningless, f"algorithm={algorithm} with aggregator={aggregator} ran"
    result = run(cfg, output_dir=tmp_path, progress=False)
    assert result.rounds == 1 and 0 < result.final_accuracy <= 1
