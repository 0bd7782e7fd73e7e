"""Tests for fedlab.data.partition on the real MNIST labels.

Exact properties of the partitions of McMahan et al. (2017), Sec. 3 (IID: 100 clients x 600;
pathological non-IID: 200 label-sorted shards of 300, 2 per client) and of the Dirichlet
label skew of Hsu et al. (2019).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from fedlab.data import (
    PartitionError,
    dirichlet,
    iid,
    label_histogram,
    load_mnist,
    shards,
)
from fedlab.data.partition import labels_per_client, natural_subset, quantity_skew


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    y = load_mnist().y_train
    assert y.shape == (60000,)
    return y


def assert_disjoint_sorted_int64(parts: list[np.ndarray]) -> np.ndarray:
    for p in parts:
        assert p.dtype == np.int64 and p.ndim == 1
        assert np.all(np.diff(p) > 0)  # sorted ascending, no duplicates
    union = np.concatenate(parts)
    assert np.unique(union).size == union.size
    return union


def cover_90(hist: np.ndarray) -> np.ndarray:
    """Per client, how many classes (largest first) it takes to cover 90% of its examples."""
    ordered = -np.sort(-hist, axis=1)
    share = np.cumsum(ordered, axis=1) / hist.sum(axis=1, keepdims=True)
    return (share < 0.9 - 1e-12).sum(axis=1) + 1


# ---------------------------------------------------------------------------- IID


def test_iid_mnist_100_clients(labels: np.ndarray) -> None:
    parts = iid(labels.size, 100, np.random.default_rng(0))
    assert len(parts) == 100 and all(p.size == 600 for p in parts)
    union = assert_disjoint_sorted_int64(parts)
    assert np.array_equal(np.sort(union), np.arange(60000))
    hist = label_histogram(labels, parts, 10)
    assert hist.shape == (100, 10) and np.all(hist.sum(axis=1) == 600)
    # Roughly uniform: expected ~54-67 per (client, digit), binomial sd ~7.
    assert hist.min() >= 25 and hist.max() <= 110
    assert np.all(hist > 0)


def test_iid_drops_remainder() -> None:
    parts = iid(10, 3, np.random.default_rng(1))
    assert [p.size for p in parts] == [3, 3, 3]
    assert assert_disjoint_sorted_int64(parts).size == 9
    assert [p.size for p in iid(5, 5, np.random.default_rng(1))] == [1] * 5


@pytest.mark.parametrize("num_clients", [0, -3, 11])
def test_iid_errors(num_clients: int) -> None:
    with pytest.raises(PartitionError, match=f"num_clients={num_clients}"):
        iid(10, num_clients, np.random.default_rng(0))


# ---------------------------------------------------------------------------- shards


def positions_in_label_order(labels: np.ndarray, part: np.ndarray) -> np.ndarray:
    rank = np.empty(labels.size, dtype=np.int64)
    rank[np.argsort(labels, kind="stable")] = np.arange(labels.size)
    return np.sort(rank[part])


def test_shards_random_paper_setting(labels: np.ndarray) -> None:
    parts = shards(labels, 100, 2, None, "random", np.random.default_rng(0))
    assert len(parts) == 100 and all(p.size == 600 for p in parts)
    union = assert_disjoint_sorted_int64(parts)
    assert union.size == 60000
    shard_ids = []
    for part in parts:
        # Each client is exactly 2 aligned blocks of 300 consecutive label-sorted examples.
        blocks = positions_in_label_order(labels, part).reshape(2, 300)
        assert np.all(blocks[:, 0] % 300 == 0)
        assert np.array_equal(blocks, blocks[:, :1] + np.arange(300))
        shard_ids += (blocks[:, 0] // 300).tolist()
    assert sorted(shard_ids) == list(range(200))

    hist = label_histogram(labels, parts, 10)
    digits = (hist > 0).sum(axis=1)
    assert np.median(digits) <= 2 and digits.max() <= 4
    # Expected (client, digit) pairs: each shard covers 1 digit, or 2 when it straddles a
    # label boundary; a client whose shards share a digit counts it once.
    sorted_labels = np.sort(labels, kind="stable").reshape(200, 300)
    per_shard = (sorted_labels[:, 0] != sorted_labels[:, -1]).astype(int) + 1
    upper = int(per_shard.sum())
    assert upper == 209  # 200 shards, 9 of them straddle a digit boundary
    assert upper - 25 <= digits.sum() <= upper


def test_shards_fixed_assignment(labels: np.ndarray) -> None:
    parts = shards(labels, 100, 2, None, "fixed", np.random.default_rng(0))
    by_label = np.argsort(labels, kind="stable")
    for i, part in enumerate(parts):
        expected = np.concatenate(
            [by_label[i * 300 : (i + 1) * 300], by_label[(i + 100) * 300 : (i + 101) * 300]]
        )
        assert np.array_equal(part, np.sort(expected))
    again = shards(labels, 100, 2, None, "fixed", np.random.default_rng(99))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    # Client i holds one digit from the first half of the sorted order and one from the
    # second: with 2 shards per client almost all clients see exactly 2 digits.
    digits = (label_histogram(labels, parts, 10) > 0).sum(axis=1)
    assert np.all(digits >= 2) and np.median(digits) == 2


def test_shards_explicit_size_uses_prefix(labels: np.ndarray) -> None:
    parts = shards(labels, 10, 3, 100, "random", np.random.default_rng(0))
    assert all(p.size == 300 for p in parts)
    assert_disjoint_sorted_int64(parts)
    # Only the first 3,000 label-sorted examples are used: all zeros (5,923 of them).
    assert all(np.all(labels[p] == 0) for p in parts)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ((100, 2, 301, "random"), r"=60200 must be <= the number of examples \(60000\)"),
        ((60001, 1, None, "random"), r"60001 shards must be <= the number of examples"),
        ((0, 2, None, "random"), r"num_clients=0"),
        ((100, 0, None, "random"), r"shards_per_client=0"),
        ((100, 2, 0, "random"), r"shard_size=0"),
        ((100, 2, None, "sorted"), r"'sorted'; allowed: random, fixed"),
    ],
)
def test_shards_errors(labels: np.ndarray, args: tuple, pattern: str) -> None:
    with pytest.raises(PartitionError, match=pattern):
        shards(labels, *args, rng=np.random.default_rng(0))


# ---------------------------------------------------------------------------- Dirichlet


def test_dirichlet_equal_sizes_disjoint(labels: np.ndarray) -> None:
    parts = dirichlet(labels, 100, 0.5, np.random.default_rng(0))
    assert len(parts) == 100 and all(p.size == 600 for p in parts)
    assert assert_disjoint_sorted_int64(parts).size == 60000


def test_dirichlet_many_clients_fast(labels: np.ndarray) -> None:
    start = time.perf_counter()
    parts = dirichlet(labels, 3400, 0.1, np.random.default_rng(0), num_classes=10)
    elapsed = time.perf_counter() - start
    assert len(parts) == 3400 and all(p.size == 17 for p in parts)
    assert assert_disjoint_sorted_int64(parts).size == 3400 * 17
    assert elapsed < 5.0  # ~0.4 s measured; generous bound for slow machines


def test_dirichlet_smaller_alpha_more_skew(labels: np.ndarray) -> None:
    stats = {}
    for alpha in (0.1, 100.0):
        parts = dirichlet(labels, 100, alpha, np.random.default_rng(0))
        hist = label_histogram(labels, parts, 10)
        stats[alpha] = ((hist.max(axis=1) / 600).mean(), cover_90(hist).mean())
    (share_skewed, cover_skewed), (share_flat, cover_flat) = stats[0.1], stats[100.0]
    assert share_skewed > 0.5 and share_flat < 0.2
    assert cover_skewed <= 4 and cover_flat >= 8


def test_dirichlet_redistributes_when_a_class_runs_out() -> None:
    labels = np.array([0] * 5 + [1] * 995 + [2] * 3, dtype=np.int64)
    parts = dirichlet(labels, 10, 0.1, np.random.default_rng(3))
    assert all(p.size == 100 for p in parts)
    union = assert_disjoint_sorted_int64(parts)
    assert union.size == 1000
    hist = label_histogram(labels, parts)
    assert hist.shape == (10, 3)
    assert hist.sum(axis=0)[1] >= 992  # the scarce classes cannot fill the demand


def test_dirichlet_num_classes_larger_than_observed(labels: np.ndarray) -> None:
    parts = dirichlet(labels, 50, 1.0, np.random.default_rng(0), num_classes=12)
    assert all(p.size == 1200 for p in parts)
    assert label_histogram(labels, parts, 12).shape == (50, 12)
    with pytest.raises(PartitionError, match="num_classes=5"):
        dirichlet(labels, 50, 1.0, np.random.default_rng(0), num_classes=5)


@pytest.mark.parametrize("alpha", [0, 0.0, -1.0, float("nan")])
def test_dirichlet_bad_alpha(labels: np.ndarray, alpha: float) -> None:
    with pytest.raises(PartitionError, match=r"alpha=.* must be > 0"):
        dirichlet(labels, 10, alpha, np.random.default_rng(0))


@pytest.mark.parametrize("num_clients", [0, 60001])
def test_dirichlet_bad_num_clients(labels: np.ndarray, num_clients: int) -> None:
    with pytest.raises(PartitionError, match=f"num_clients={num_clients}"):
        dirichlet(labels, num_clients, 1.0, np.random.default_rng(0))


# ---------------------------------------------------------------------------- all three

PARTITIONERS: dict[str, Callable[[np.ndarray, np.random.Generator], list[np.ndarray]]] = {
    "iid": lambda y, rng: iid(y.size, 100, rng),
    "shards": lambda y, rng: shards(y, 100, 2, None, "random", rng),
    "dirichlet": lambda y, rng: dirichlet(y, 100, 0.3, rng),
}


@pytest.mark.parametrize("name", list(PARTITIONERS))
def test_seed_determinism(labels: np.ndarray, name: str) -> None:
    make = PARTITIONERS[name]
    first = make(labels, np.random.default_rng(1234))
    same = make(labels, np.random.default_rng(1234))
    other = make(labels, np.random.default_rng(4321))
    assert all(np.array_equal(a, b) for a, b in zip(first, same, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_label_histogram_matches_bincount(labels: np.ndarray) -> None:
    parts = [np.array([0, 1, 2]), np.array([], dtype=np.int64), np.arange(100, 200)]
    hist = label_histogram(labels, parts, 10)
    assert hist.dtype == np.int64 and hist.shape == (3, 10)
    for row, part in zip(hist, parts, strict=True):
        assert np.array_equal(row, np.bincount(labels[part], minlength=10))
    assert label_histogram(labels, [], 10).shape == (0, 10)


# ---------------------------------------------------------------------------- quantity skew


@pytest.mark.parametrize(("distribution", "exponent"), [("power_law", 1.5), ("lognormal", 1.0)])
def test_quantity_skew_sizes_follow_the_drawn_weights_and_labels_stay_iid(
    labels: np.ndarray, distribution: str, exponent: float
) -> None:
    from fedlab.data.partition import _apportion

    parts = quantity_skew(labels.size, 100, distribution, exponent, np.random.default_rng(4))
    union = assert_disjoint_sorted_int64(parts)
    assert np.array_equal(np.sort(union), np.arange(60000))  # every example, once
    sizes = np.array([p.size for p in parts])
    rng = np.random.default_rng(4)
    weights = 1 + rng.pareto(exponent, 100) if distribution == "power_law" else None
    if weights is None:
        weights = rng.lognormal(0.0, exponent, 100)
    assert np.array_equal(sizes, 1 + _apportion(60000 - 100, weights))  # exactly the law's
    assert sizes.min() >= 1 and sizes.max() > 5 * np.median(sizes)  # skewed, not equal
    # Labels IID: the large clients' label shares are the global ones (binomial sd < 0.015).
    hist = label_histogram(labels, parts, 10)
    big = sizes >= 1000
    assert big.sum() >= 5
    share = hist[big] / sizes[big, None]
    assert np.abs(share - np.bincount(labels) / labels.size).max() < 0.06


@pytest.mark.parametrize("exponent", [0, -1.0, float("inf")])
def test_quantity_skew_refuses_a_bad_exponent(exponent: float) -> None:
    with pytest.raises(PartitionError, match="exponent"):
        quantity_skew(100, 10, "power_law", exponent, np.random.default_rng(0))
    with pytest.raises(PartitionError, match="allowed: power_law, lognormal"):
        quantity_skew(100, 10, "zipf", 1.0, np.random.default_rng(0))


# ---------------------------------------------------------------------------- labels per client


@pytest.mark.parametrize(("num_clients", "k"), [(100, 2), (10, 1), (37, 3), (20, 10)])
def test_each_client_holds_exactly_k_classes(labels: np.ndarray, num_clients: int, k: int) -> None:
    parts = labels_per_client(labels, num_clients, k, np.random.default_rng(1), 10)
    union = assert_disjoint_sorted_int64(parts)
    hist = label_histogram(labels, parts, 10)
    assert ((hist > 0).sum(axis=1) == k).all()
    # Every class is held (K >= C), and all of its examples are dealt out.
    assert np.array_equal(np.sort(union), np.arange(60000))
    # A class's holders get near-equal shares of it.
    for c in range(10):
        held = hist[:, c][hist[:, c] > 0]
        assert held.max() - held.min() <= 1


def test_labels_per_client_refuses_more_classes_than_there_are(labels: np.ndarray) -> None:
    with pytest.raises(PartitionError, match="classes_per_client=11 must be <= .* \\(10\\)"):
        labels_per_client(labels, 10, 11, np.random.default_rng(0), 10)
    few = np.array([0, 0, 1], np.int64)
    with pytest.raises(PartitionError, match="class 1 has 1 examples for 2 clients"):
        labels_per_client(few, 2, 2, np.random.default_rng(0), 2)


# ---------------------------------------------------------------------------- natural clients


def test_natural_subset_is_seeded_sorted_and_all_when_equal() -> None:
    a = natural_subset(1214, 100, np.random.default_rng([0, 0]))
    b = natural_subset(1214, 100, np.random.default_rng([0, 0]))
    c = natural_subset(1214, 100, np.random.default_rng([1, 0]))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.size == 100 and np.all(np.diff(a) > 0) and a.max() < 1214
    assert np.array_equal(natural_subset(50, 50, np.random.default_rng(0)), np.arange(50))
    with pytest.raises(PartitionError, match="num_clients=51 must be <= the dataset's 50"):
        natural_subset(50, 51, np.random.default_rng(0))


def test_stored_order_is_the_order_the_partition_dealt() -> None:
    """``local_order=stored``: the seed notebook's non-IID clients step through their first
    shard (one digit), then their second, the same every round and every epoch."""
    from fedlab.core.client_state import ClientStateStore
    from fedlab.data import federate
    from fedlab.experiment import client_work_of
    from tests.conftest import checked

    cfg = checked("experiment=notebook_noniid", "E=2")
    assert (cfg.partition.name, str(cfg.partition.assignment), str(cfg.local_order)) == (
        "shards",
        "fixed",
        "stored",
    )
    data = federate(cfg)
    work = client_work_of(cfg, data, ClientStateStore(None))
    first, later = work(3, 1), work(3, 7)
    assert first.order.shape == (2, 600)
    np.testing.assert_array_equal(first.order, later.order)  # the same every round
    np.testing.assert_array_equal(first.order[0], first.order[1])  # and every epoch
    labels = first.y[first.order[0]]
    assert len(set(labels[:300])) == 1 and len(set(labels[300:])) == 1
    assert labels[0] != labels[-1]
    # Shard 3 then shard 103 of the label-sorted data, each in that order.
    by_label = np.argsort(data.y_train, kind="stable")
    dealt = np.concatenate([by_label[3 * 300 : 4 * 300], by_label[103 * 300 : 104 * 300]])
    np.testing.assert_array_equal(data.clients[3][first.order[0]], dealt)
    # An IID client's stored order is its share of the shuffle, as dealt.
    iid = checked("model=2nn", "local_order=stored")
    iid_data = federate(iid)
    positions = iid_data.stored_order(0)
    assert sorted(positions.tolist()) == list(range(600))
    assert not np.array_equal(positions, np.arange(600))
    # The default, shuffled: a fresh order every round.
    shuffled = client_work_of(checked("model=2nn"), iid_data, ClientStateStore(None))
    assert not np.array_equal(shuffled(0, 1).order, shuffled(0, 2).order)
