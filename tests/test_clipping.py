"""Gradient clipping on the client (``client_optimizer.global_clipnorm``): each local step's
gradient scaled to at most the given global L2 norm, as Keras' ``global_clipnorm`` does, checked
against a NumPy FedAvg that clips by hand; off (null) by default, where it leaves every number,
checkpoint key and report configuration as they were before the key existed."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fedlab.checkpoint import config_key, configuration_key
from fedlab.report import group
from fedlab.report.reading import load_series
from tests.conftest import assert_refused, checked
from tests.engines import make_fast
from tests.test_fast import O, _clients, opt
from tests.test_fedprox import logreg_round
from tests.test_report import make_run, real_params


def _start(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal((784, 10)) * 0.5).astype(np.float32),
        (rng.standard_normal(10) * 0.5).astype(np.float32),
    )


def _fast_round(client_cfg, w0, b0, clients):
    fast = make_fast("logreg", client_cfg, opt(O.sgd, 0.5), parallel_clients=1)
    return fast.model_weights(fast.next(fast.initialize([w0, b0]), clients).state)


def test_each_local_step_is_clipped_to_the_global_norm() -> None:
    lr, clipnorm = 0.1, 11.0  # the steps' gradient norms are 7 to 15
    w0, b0 = _start()
    clients = _clients((7, 13, 20), 2, 5, seed=3)
    (want_w, want_b), clipped = logreg_round(w0, b0, clients, lr, 0.5, clipnorm=clipnorm)
    (plain_w, _), unclipped = logreg_round(w0, b0, clients, lr, 0.5)
    steps = sum(len(range(0, w.order.shape[1], 5)) * len(w.order) for w in clients)
    # The bound bites on some steps, not all: both branches of the formula are exercised.
    assert 0 < clipped < steps and unclipped == 0, (clipped, steps)
    assert np.abs(want_w - plain_w).max() > 1e-3

    client = opt(O.sgd, lr)
    client.global_clipnorm = clipnorm
    got_w, got_b = _fast_round(client, w0, b0, clients)
    np.testing.assert_allclose(got_w, want_w, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_b, want_b, atol=1e-5, rtol=0)


def test_a_bound_no_step_reaches_changes_nothing_bit_for_bit() -> None:
    w0, b0 = _start()
    clients = _clients((7, 13), 2, 5, seed=4)
    loose = opt(O.adam, 1e-2)
    loose.global_clipnorm = 1e6
    for a, b in zip(
        _fast_round(loose, w0, b0, clients),
        _fast_round(opt(O.adam, 1e-2), w0, b0, clients),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "sgdm", "adam", "adagrad", "yogi"])
def test_every_client_optimizer_takes_the_key_without_a_plus(name: str) -> None:
    cfg = checked(f"client_optimizer={name}", "client_optimizer.global_clipnorm=2.5")
    assert cfg.client_optimizer.global_clipnorm == 2.5
    assert checked(f"client_optimizer={name}").client_optimizer.global_clipnorm is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["client_optimizer.global_clipnorm=0"], ["global_clipnorm=0.0", "> 0, or null"]),
        (["client_optimizer.global_clipnorm=-1"], ["global_clipnorm=-1.0", "> 0, or null"]),
        (["client_optimizer.global_clipnorm=inf"], ["global_clipnorm=inf", "finite"]),
        (["+server_optimizer.global_clipnorm=1"], ["server_optimizer.global_clipnorm=1.0"]),
        (["client_optimizer.global_clipnorm=1", "engine=tff"], ["engine=tff", "engine=fast"]),
    ],
)
def test_clipping_that_cannot_run_is_refused_in_one_line(overrides, words) -> None:
    assert_refused(["model=2nn", *overrides], words)


# Keys computed before global_clipnorm existed (fedlab at 391280b): checkpoints written then are
# still found, and the report puts those runs with today's.
BEFORE = {
    ("model=2nn",): ("54eddc5e7cff99d3", "fc00b3970d99"),
    ("experiment=table2_shakespeare", "client_optimizer.lr=2.94"): (
        "eeacae70414f9875",
        "42b8e9b0220c",
    ),
}


@pytest.mark.parametrize("overrides", BEFORE, ids=[" ".join(o) for o in BEFORE])
def test_off_by_default_keeps_the_keys_of_earlier_runs(overrides) -> None:
    cfg = checked(*overrides)
    assert (config_key(cfg), configuration_key(cfg)) == BEFORE[overrides]
    clipped = checked(*overrides, "client_optimizer.global_clipnorm=1")
    assert config_key(clipped) != config_key(cfg)
    assert configuration_key(clipped) != configuration_key(cfg)


def test_the_report_groups_a_run_recorded_before_the_key_with_todays(tmp_path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("fedlab")
    today = real_params("model=2nn", "seed=0")
    assert today["client_optimizer.global_clipnorm"] == "null"
    before = {k: v for k, v in real_params("model=2nn", "seed=1").items() if "clipnorm" not in k}
    clipped = real_params("model=2nn", "seed=2", "client_optimizer.global_clipnorm=1")
    for name, params in (("today", today), ("before", before), ("clipped", clipped)):
        make_run(client, experiment, name, params, [0.1, 0.5])
    series, left_out = load_series(client, client.search_runs([experiment]))
    assert not left_out
    configs = group(series)
    assert sorted(sorted(r.name for r in c.runs) for c in configs) == [
        ["before", "today"],
        ["clipped"],
    ]
