"""The Byzantine-robust aggregators (``fedlab/aggregators/``: krum, multi_krum, bulyan,
geometric_median, centered_clipping, norm_bounding): each against a NumPy reference written
here on hand-made updates, its known property, what it logs, and its one-line refusals of a
round too small for it. The mean, median and trimmed mean are in ``tests/test_aggregators.py``,
which also runs every aggregator a round on both engines."""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.aggregators import AGGREGATORS, build_aggregator
from fedlab.errors import ConfigError
from tests.conftest import checked


def _aggregator(name: str, **keys):
    return build_aggregator(AGGREGATORS.get(name).Config(name=name, **keys))


def _split(vector: np.ndarray) -> list[np.ndarray]:
    """A flat update as two arrays (a 2x2 matrix and the rest), as a model's would be."""
    return [vector[:4].reshape(2, 2).astype(np.float32), vector[4:].astype(np.float32)]


def _flat(update: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in update])


def _cloud(honest: int, malicious: int, far: float = 50.0, seed: int = 0, d: int = 6):
    """``honest`` updates near a common point, then ``malicious`` colluding ones (all equal,
    ``far`` away): the case Krum's guarantee is about. Returns (updates, malicious flags)."""
    rng = np.random.default_rng(seed)
    center = rng.normal(size=d)
    good = [center + rng.normal(scale=0.5, size=d) for _ in range(honest)]
    bad = [center + far for _ in range(malicious)]
    return [_split(v) for v in good + bad], [False] * honest + [True] * malicious


def _refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        checked(*overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# -- krum --------------------------------------------------------------------------------------


def _krum_reference(vectors: list[np.ndarray], f: int) -> list[float]:
    """Blanchard et al.'s score, by loops: the n - f - 2 smallest squared distances to others."""
    n = len(vectors)
    scores = []
    for i in range(n):
        d = sorted(float(np.sum((vectors[i] - vectors[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(d[: n - f - 2]))
    return scores


@pytest.mark.parametrize(("n", "f"), [(5, 1), (7, 2), (10, 3), (10, 1)])
def test_krum_keeps_the_update_of_least_score(n, f) -> None:
    rng = np.random.default_rng(n + f)
    updates = [_split(rng.normal(size=6) * (1 + i)) for i in range(n)]
    got, _, metrics = _aggregator("krum", f=f).next({}, updates, [1.0] * n)
    scores = _krum_reference([_flat(u) for u in updates], f)
    chosen = int(np.argmin(scores))
    for a, b in zip(got, updates[chosen], strict=True):
        np.testing.assert_array_equal(a, b)
    assert metrics == {"f": f, "kept": 1.0}


@pytest.mark.parametrize(("n", "f"), [(5, 1), (7, 2), (10, 3), (11, 4), (20, 8)])
def test_krum_keeps_an_honest_update_when_f_is_below_n_minus_2_over_2(n, f) -> None:
    assert f < (n - 2) / 2
    for seed in range(5):
        updates, malicious = _cloud(n - f, f, seed=seed)
        aggregator = _aggregator("krum")  # f null: the most it tolerates, floor((n - 3) / 2)
        got, _, metrics = aggregator.next_marked({}, updates, [1.0] * n, malicious)
        assert metrics["kept_malicious"] == 0 and metrics["f"] == (n - 3) // 2
        assert any(np.array_equal(_flat(got), _flat(u)) for u in updates[: n - f])


def test_krum_with_a_malicious_majority_keeps_a_malicious_update() -> None:
    updates, malicious = _cloud(3, 4)  # the colluders agree: they are each other's neighbours
    _, _, metrics = _aggregator("krum", f=1).next_marked({}, updates, [1.0] * 7, malicious)
    assert metrics["kept_malicious"] == 1


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["C=0.04"], ["aggregator=krum needs at least 5 clients a round", "f=1", "samples 4"]),
        (["aggregator.f=3", "C=0.08"], ["needs at least 9", "f=3: n >= 2f + 3", ">= 9"]),
        (["aggregator.f=-1"], ["aggregator.f=-1", "integer >= 0"]),
        (["engine=tff"], ["aggregator=krum cannot run on engine=tff", "engine=fast"]),
        (["attack=sign_flip", "attack.fraction=0.5"], ["aggregator=krum", "honest majority"]),
        (["placement=ray"], ["aggregator=krum cannot run with placement=ray"]),
    ],
)
def test_krum_refuses_what_it_cannot_be_in_one_line(overrides, words) -> None:
    message = _refused("aggregator=krum", *overrides)
    for word in words:
        assert word in message, message


# -- multi_krum --------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "f", "keep"), [(7, 2, None), (10, 3, None), (10, 1, 4)])
def test_multi_krum_averages_the_keep_updates_of_least_score(n, f, keep) -> None:
    rng = np.random.default_rng(n)
    updates = [_split(rng.normal(size=6) * (1 + i % 3)) for i in range(n)]
    got, _, metrics = _aggregator("multi_krum", f=f, keep=keep).next({}, updates, [1.0] * n)
    scores = _krum_reference([_flat(u) for u in updates], f)
    best = np.argsort(scores, kind="stable")[: keep or n - f]
    want = np.mean([_flat(updates[i]) for i in best], axis=0)
    np.testing.assert_allclose(_flat(got), want, rtol=1e-6)
    assert metrics == {"f": f, "kept": float(len(best))}


def test_multi_krum_drops_the_colluders_and_logs_it() -> None:
    updates, malicious = _cloud(7, 3)
    got, _, metrics = _aggregator("multi_krum").next_marked({}, updates, [1.0] * 10, malicious)
    assert metrics == {"f": 3, "kept": 7.0, "kept_malicious": 0.0}
    np.testing.assert_allclose(
        _flat(got), np.mean([_flat(u) for u in updates[:7]], axis=0), rtol=1e-6
    )


def test_multi_krum_refuses_keeping_more_than_a_round_samples() -> None:
    message = _refused("aggregator=multi_krum", "aggregator.keep=11")
    assert "aggregator.keep=11" in message and "1 <= keep <= 10" in message


# -- bulyan ------------------------------------------------------------------------------------


def _bulyan_reference(vectors: list[np.ndarray], f: int) -> tuple[np.ndarray, list[int]]:
    """El Mhamdi et al.'s Bulyan by loops: theta Krum picks, then per coordinate the mean of the
    beta values nearest the selection's median."""
    n = len(vectors)
    theta, beta = n - 2 * f, n - 4 * f
    remaining, chosen = list(range(n)), []
    for _ in range(theta):
        k = len(remaining)
        closest = min(max(k - f - 2, 1), k - 1)
        scores = []
        for i in remaining:
            d = sorted(float(np.sum((vectors[i] - vectors[j]) ** 2)) for j in remaining if j != i)
            scores.append(sum(d[:closest]))
        pick = remaining[int(np.argmin(scores))]
        chosen.append(pick)
        remaining.remove(pick)
    out = np.empty(len(vectors[0]))
    for c in range(len(out)):
        values = np.array([vectors[i][c] for i in chosen])
        order = np.argsort(np.abs(values - np.median(values)), kind="stable")
        out[c] = values[order[:beta]].mean()
    return out, chosen


@pytest.mark.parametrize(("n", "f"), [(7, 1), (11, 2), (15, 3)])
def test_bulyan_matches_a_numpy_reference(n, f) -> None:
    rng = np.random.default_rng(n)
    updates = [_split(rng.normal(size=6) * (1 + i % 4)) for i in range(n)]
    got, _, metrics = _aggregator("bulyan", f=f).next({}, updates, [1.0] * n)
    want, chosen = _bulyan_reference([_flat(u) for u in updates], f)
    np.testing.assert_allclose(_flat(got), want, rtol=1e-6)
    assert metrics == {"f": f, "selected": float(n - 2 * f)}


@pytest.mark.parametrize(("n", "f"), [(7, 1), (11, 2), (19, 4)])
def test_bulyans_bounds_each_coordinate_within_the_honest_values(n, f) -> None:
    # n = 4f + 3, Bulyan's bound; the colluders sit far out, on either side per coordinate.
    assert n >= 4 * f + 3
    for seed in range(5):
        updates, malicious = _cloud(n - f, f, far=1e3, seed=seed)
        rng = np.random.default_rng(seed)
        signs = rng.choice([-1.0, 1.0], size=6)
        for i in range(n - f, n):  # each malicious update on its own side of each coordinate
            updates[i] = _split(_flat(updates[0]) + signs * 1e3 * (1 + i))
        got, _, metrics = _aggregator("bulyan").next_marked({}, updates, [1.0] * n, malicious)
        honest = np.stack([_flat(u) for u in updates[: n - f]])
        assert np.all(_flat(got) >= honest.min(axis=0) - 1e-6)
        assert np.all(_flat(got) <= honest.max(axis=0) + 1e-6)
        assert metrics["selected_malicious"] == 0 and metrics["f"] == f


def test_bulyan_refuses_a_round_below_4f_plus_3() -> None:
    message = _refused("aggregator=bulyan", "C=0.06")
    assert "aggregator=bulyan needs at least 7 clients a round" in message
    message = _refused("aggregator=bulyan", "aggregator.f=2", "C=0.1")
    assert "needs at least 11" in message and "n >= 4f + 3" in message


# -- geometric_median --------------------------------------------------------------------------


def _rfa_reference(points, alphas, maxiter=4, nu=1e-5, ftol=1e-6):
    """RFA's smoothed Weiszfeld as the authors write it, point by point."""
    alphas = np.asarray(alphas, np.float64) / sum(alphas)
    median = sum(a * p for a, p in zip(alphas, points, strict=True))

    def objective(m):
        return sum(a * np.linalg.norm(m - p) for a, p in zip(alphas, points, strict=True))

    value = objective(median)
    for _ in range(maxiter):
        previous = value
        pairs = zip(alphas, points, strict=True)
        w = np.array([a / max(nu, np.linalg.norm(median - p)) for a, p in pairs])
        w = w / w.sum()
        median = sum(a * p for a, p in zip(w, points, strict=True))
        value = objective(median)
        if abs(previous - value) < ftol * value:
            break
    return median


def test_geometric_median_matches_rfas_smoothed_weiszfeld() -> None:
    rng = np.random.default_rng(1)
    updates = [_split(rng.normal(size=6) * (1 + i)) for i in range(6)]
    weights = [3.0, 1.0, 2.0, 5.0, 1.0, 4.0]
    got, _, metrics = _aggregator("geometric_median").next({}, updates, weights)
    want = _rfa_reference([_flat(u) for u in updates], weights)
    np.testing.assert_allclose(_flat(got), want, rtol=1e-5, atol=1e-7)
    assert 1 <= metrics["iterations"] <= 4


def test_geometric_median_stays_with_an_honest_majority() -> None:
    updates, malicious = _cloud(6, 4, far=1e4)
    n = len(updates)
    aggregator = _aggregator("geometric_median", maxiter=100)
    got, _, metrics = aggregator.next_marked({}, updates, [1.0] * n, malicious)
    honest = np.stack([_flat(u) for u in updates[:6]])
    spread = np.linalg.norm(honest - honest.mean(0), axis=1).max()
    assert np.linalg.norm(_flat(got) - honest.mean(0)) < 2 * spread  # the mean is 4,000 away
    assert metrics["weight_malicious"] < 1e-3 and metrics["weight"] == pytest.approx(1.0)


def test_geometric_median_refuses_fewer_than_three_clients() -> None:
    message = _refused("aggregator=geometric_median", "C=0.02")
    assert "needs at least 3 clients a round" in message and "samples 2" in message


# -- centered_clipping -------------------------------------------------------------------------


def _cc_reference(points, center, tau, iterations):
    for _ in range(iterations):
        moves = []
        for p in points:
            diff = p - center
            norm = np.linalg.norm(diff)
            moves.append(diff * min(1.0, tau / norm) if norm > 0 else diff)
        center = center + np.mean(moves, axis=0)
    return center


def test_centered_clipping_clips_around_the_last_aggregate_and_remembers_it() -> None:
    rng = np.random.default_rng(2)
    aggregator = _aggregator("centered_clipping", tau=1.5, iterations=2)
    aggregator.bind_shapes([(2, 2), (2,)])
    state = aggregator.initial_state()
    center = np.zeros(6)
    for _ in range(3):  # rounds: the center carries over in the state
        updates = [_split(rng.normal(size=6) * (1 + i)) for i in range(5)]
        got, state, metrics = aggregator.next(state, updates, [1.0] * 5)
        points = [_flat(u) for u in updates]
        before = center
        center = _cc_reference(points, center, 1.5, 2)
        np.testing.assert_allclose(_flat(got), center, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_flat(state["center"]), center, rtol=1e-5, atol=1e-6)
        last = _cc_reference(points, before, 1.5, 1)  # the center before the last iteration
        want = sum(np.linalg.norm(p - last) > 1.5 for p in points)
        assert metrics["clipped"] == want


def test_a_malicious_update_moves_centered_clipping_by_at_most_tau_over_n() -> None:
    updates, malicious = _cloud(7, 1, far=1e6)
    aggregator = _aggregator("centered_clipping", tau=1.0)
    aggregator.bind_shapes([(2, 2), (2,)])
    state = aggregator.initial_state()
    with_it, _, metrics = aggregator.next_marked(state, updates, [1.0] * 8, malicious)
    honest_only = _cc_reference([_flat(u) for u in updates[:7]] + [np.zeros(6)], np.zeros(6), 1, 1)
    assert np.linalg.norm(_flat(with_it) - honest_only) <= 1.0 / 8 + 1e-6
    assert metrics["clipped_malicious"] == 1


def test_centered_clippings_center_is_checkpointed_with_the_model() -> None:
    import dataclasses

    from fedlab.backends.fast import FastEngine
    from tests.engines import parts
    from tests.test_fast import _clients, opt

    p = parts("logreg", opt("sgd", 0.1), opt("sgd", 1.0), aggregator="centered_clipping", tau=0.05)
    engine = FastEngine(
        p.make_model(), p.client_optimizer, p.server_optimizer, p.algorithm, p.aggregator,
        parallel_clients=1,
    )  # fmt: skip
    state = engine.initialize(p.make_model().get_weights())
    made = _clients((9, 13, 20), 1, 5, 3)
    clients = [dataclasses.replace(w, client_id=i) for i, w in enumerate(made)]
    first = engine.next(state, clients).state
    assert any(np.any(a != 0) for a in first.aggregator["center"])
    resumed = engine.state_from_arrays(engine.state_arrays(first))
    straight, again = engine.next(first, clients).state, engine.next(resumed, clients).state
    for a, b in zip(engine.state_arrays(straight), engine.state_arrays(again), strict=True):
        np.testing.assert_array_equal(a, b)


# -- norm_bounding -----------------------------------------------------------------------------


def test_norm_bounding_clips_each_update_then_takes_the_weighted_mean() -> None:
    rng = np.random.default_rng(4)
    updates = [_split(rng.normal(size=6) * (0.2 + i)) for i in range(5)]
    weights = [1.0, 4.0, 2.0, 3.0, 5.0]
    malicious = [False, False, True, False, True]
    got, _, metrics = _aggregator("norm_bounding", max_norm=1.5).next_marked(
        {}, updates, weights, malicious
    )
    points = [_flat(u) for u in updates]
    norms = [np.linalg.norm(p) for p in points]
    clipped = [p * min(1.0, 1.5 / n) for p, n in zip(points, norms, strict=True)]
    want = sum(w * c for w, c in zip(weights, clipped, strict=True)) / sum(weights)
    np.testing.assert_allclose(_flat(got), want, rtol=1e-5)
    assert metrics["clipped"] == sum(n > 1.5 for n in norms)
    bad = [n for n, m in zip(norms, malicious, strict=True) if m]
    assert metrics["clipped_malicious"] == sum(n > 1.5 for n in bad)


def test_norm_bounding_in_slices_equals_it_in_one_process() -> None:
    rng = np.random.default_rng(5)
    updates = [_split(rng.normal(size=6) * (0.5 + i)) for i in range(6)]
    weights = [2.0, 1.0, 3.0, 1.0, 2.0, 4.0]
    aggregator = _aggregator("norm_bounding", max_norm=2.0)
    whole, _, metrics = aggregator.next({}, updates, weights)
    partials = []
    for part in ((0, 1, 2), (3, 4, 5)):
        partial = None
        for i in part:
            partial = aggregator.accumulate({}, partial, updates[i], weights[i])
        partials.append(partial)
    sliced, _, sliced_metrics = aggregator.combine({}, partials)
    np.testing.assert_allclose(_flat(sliced), _flat(whole), rtol=1e-6)
    assert sliced_metrics == {"clipped": metrics["clipped"]}
    malicious = [True, False, True, False, False, True]
    _, _, marked = aggregator.combine_marked({}, partials, malicious)
    _, _, whole_marked = aggregator.next_marked({}, updates, weights, malicious)
    assert marked == whole_marked and set(marked) == {"clipped", "clipped_malicious"}
    assert checked("aggregator=norm_bounding", "placement=ray").aggregator.max_norm == 2.0


def test_norm_bounding_bounds_a_boosted_update() -> None:
    updates, malicious = _cloud(9, 1, far=1e6)
    got, _, _ = _aggregator("norm_bounding", max_norm=1.0).next({}, updates, [1.0] * 10)
    honest = np.mean([_flat(u) * min(1.0, 1.0 / np.linalg.norm(_flat(u))) for u in updates[:9]], 0)
    assert np.linalg.norm(_flat(got) - 0.9 * honest) <= 0.1 + 1e-6  # its share times M
