"""``placement=ray``: one run's clients spread over the actors of a real two-node Ray cluster.

The fast tests check what needs no cluster: the refusals at compose time, the aggregators' sums
in slices, and what a checkpoint keys on. The slow ones run the real CLI against the loopback
two-node cluster of ``tests/servers.py`` (a network namespace of its own; leaving it fails the
module if any Ray process is still alive) and compare with the same run in one process.

Tolerance, and why. A round over N actors computes every client exactly as one process does
(the same tf.function, one intra-op thread; ``placement.actors=1`` is checked to be bit-identical,
which shows it), and adds the same float32 terms in another order: each actor sums its slice,
and the server adds the slices. Reordering a float32 sum of m terms changes it by at most about
``2 (m - 1) u sum|w_k u_k|`` (u = 2^-24 = 6e-8, the unit round-off), so the mean update moves by
at most ``2 (m - 1) u max|u_k|`` per coordinate: with m = 5 clients and updates below 1, under
5e-7 a round; the server step (SGD, lr 1) passes that on unchanged, and a few rounds of local
SGD from weights that differ by that much keep them within a few times it. So weights and
server state: ``atol=5e-6`` (ten times that bound, for 3 rounds), ``rtol=1e-5``; seen: see the
README ("Running on a cluster"). A real error (a client dropped or counted twice, a slice's
weight lost, the noise drawn twice) moves the weights by 1e-3 or more. Metrics: train loss
``rtol=1e-5`` (float32 sums of the clients' batch losses, reordered the same way), examples and
bytes exactly, test accuracy within 2 of the 10,000 test images (a weight that moves by 1e-7
can flip an image whose two best logits tie to that precision).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedlab.checkpoint import affects_numbers
from fedlab.config import RunConfig
from fedlab.errors import ConfigError
from tests.conftest import checked, cli_env, only_run, run_cli

# The smallest real work: logistic regression, 5 clients a round, so 2 actors get 3 and 2.
SMALL = [
    "model=logreg",
    "client_optimizer=sgd",
    "server_optimizer=sgd",
    "C=0.05",
    "B=50",
    "tracking.log_model=false",
]
ATOL, RTOL = 5e-6, 1e-5
ACCURACY_ATOL = 2 / 10_000


# --- compose time: what placement=ray refuses, in one line --------------------------------------

REFUSED = {
    "median": (["aggregator=median"], "aggregator=median cannot run with placement=ray"),
    "trimmed_mean": (
        ["aggregator=trimmed_mean"],
        "aggregator=trimmed_mean cannot run with placement=ray",
    ),
    "tff": (["engine=tff"], "placement=ray cannot run on engine=tff"),
    "gpu": (["hardware=gpu"], "placement=ray trains on the actors' CPUs"),
    "idle-actors": (["placement.actors=11"], "placement.actors=11 is more than the 10 clients"),
    "address": (["placement.address=head.example"], "placement.address='head.example'"),
    "actors": (["placement.actors=0"], "placement.actors=0 is invalid"),
}


@pytest.mark.parametrize(("overrides", "start"), REFUSED.values(), ids=REFUSED)
def test_placement_ray_refuses_what_partial_sums_cannot_compute(
    compose_cfg, overrides: list[str], start: str
) -> None:
    with pytest.raises(ConfigError) as info:
        checked("placement=ray", *overrides)
    message = str(info.value)
    assert message.startswith(start), message
    assert "allowed" in message and "\n" not in message


def test_ray_keys_have_no_effect_with_placement_local(compose_cfg) -> None:
    with pytest.raises(ConfigError) as info:
        checked("placement.actors=4")
    assert str(info.value) == (
        "placement.actors=4 has no effect with placement=local; it applies to placement=ray"
    )


def test_the_supported_combinations_compose(compose_cfg) -> None:
    for overrides in (
        [],
        ["algorithm=fedprox"],
        ["algorithm=scaffold"],
        ["privacy=dp_fedavg", "privacy.noise_multiplier=0.5"],
        ["compression=topk", "compression.error_feedback=true"],
        ["placement.address=auto", "placement.actors=10", "placement.cpus_per_actor=4"],
        ["placement.address=10.0.0.1:6379"],
    ):
        cfg = checked("placement=ray", *overrides)
        assert isinstance(cfg, RunConfig) and cfg.placement.name == "ray"


def test_a_refusal_is_one_line_before_tensorflow_or_ray_load(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fedlab", "placement=ray", "aggregator=median"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    from fedlab.aggregators import AGGREGATORS

    summable = "|".join(name for name, entry in AGGREGATORS.items() if entry.summable)
    assert "mean" in summable
    assert lines == [
        "fedlab: error: aggregator=median cannot run with placement=ray: it needs every "
        "client's update, and each actor returns one partial sum; allowed with placement=ray: "
        f"aggregator={summable}, or placement=local"
    ]
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert not {m for m in modules if m.split(".")[0] in ("ray", "tensorflow")}


def test_an_address_nothing_answers_on_fails_in_one_line_and_the_run_says_why(
    tmp_path: Path,
) -> None:
    """Given a closed port, Ray's own ray.init retries for minutes; fedlab refuses in seconds,
    and the MLflow run it had started ends FAILED with the reason."""
    from mlflow.tracking import MlflowClient

    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["placement=ray", f"placement.address=127.0.0.1:{port}", "model=logreg", "C=0.05"]
    result = run_cli(*args, "rounds=1", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [s for s in result.stderr.strip().splitlines() if s.startswith("fedlab: error:")]
    assert f"placement.address=127.0.0.1:{port}: nothing answers there" in line
    assert "Traceback" not in result.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("fedlab").experiment_id])
    assert run.info.status == "FAILED"
    assert "nothing answers there" in run.data.tags["fedlab.failure"]


def test_a_checkpoint_keys_on_the_placement_but_not_on_where_the_cluster_is(compose_cfg) -> None:
    from fedlab.checkpoint import config_key

    def key(*overrides: str) -> str:
        return config_key(checked(*overrides))

    local, two, three = key(), key("placement=ray"), key("placement=ray", "placement.actors=3")
    assert len({local, two, three}) == 3  # bit-identical only for the same placement
    assert key("placement=ray", "placement.address=auto", "placement.cpus_per_actor=2") == two
    # A report puts them in one configuration: they agree to round-off.
    for key_name in ("placement.name", "placement.actors"):
        assert affects_numbers(key_name, exact=True) and not affects_numbers(key_name, exact=False)
    assert not affects_numbers("placement.address", exact=True)


# --- the aggregators in slices ----------------------------------------------------------------


def _updates(clients: int, seed: int = 0) -> tuple[list[list[np.ndarray]], list[float]]:
    rng = np.random.default_rng(seed)
    updates = [
        [
            rng.normal(0, 0.1, (784, 10)).astype(np.float32),
            rng.normal(0, 0.1, 10).astype(np.float32),
        ]
        for _ in range(clients)
    ]
    return updates, [float(n) for n in rng.integers(20, 600, clients)]


def _aggregators():
    from fedlab.aggregators import build_aggregator
    from fedlab.aggregators.base import AggregatorConfig
    from fedlab.privacy.dp_fedavg import DpFedAvgConfig, GaussianDpMean

    yield "mean", build_aggregator(AggregatorConfig(name="mean"))
    yield "dp-fixed", GaussianDpMean(DpFedAvgConfig(noise_multiplier=0.5, clip=0.5), 7, seed=3)
    adaptive = DpFedAvgConfig(
        noise_multiplier=0.5, clip=0.5, target_quantile=0.5, clipped_count_stddev=1.0
    )
    yield "dp-adaptive", GaussianDpMean(adaptive, 7, seed=3)


@pytest.mark.parametrize("name", ["mean", "dp-fixed", "dp-adaptive"])
def test_slices_sum_to_the_whole_cohort(name: str) -> None:
    aggregator = dict(_aggregators())[name]
    state = aggregator.initial_state()
    updates, weights = _updates(7)
    whole, whole_state, whole_metrics = aggregator.next(state, updates, weights)

    def partial(positions) -> object:
        folded = None
        for j in positions:
            folded = aggregator.accumulate(state, folded, updates[j], weights[j])
        return folded

    # One slice is the whole cohort bit for bit (placement.actors=1).
    one, one_state, one_metrics = aggregator.combine(state, [partial(range(7))])
    for a, b in zip(one, whole, strict=True):
        np.testing.assert_array_equal(a, b)
    assert one_metrics == whole_metrics
    # Slices of 4 and 3: the same terms added in another order.
    cut, cut_state, cut_metrics = aggregator.combine(
        state, [partial(range(4)), partial(range(4, 7))]
    )
    for a, b in zip(cut, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7)
    assert cut_metrics.keys() == whole_metrics.keys()
    for key in whole_metrics:  # the unclipped count is an integer; the clip follows from it
        assert cut_metrics[key] == pytest.approx(whole_metrics[key], rel=1e-6)
    assert int(cut_state.get("noise_round", 0)) == int(whole_state.get("noise_round", 0))
    assert aggregator.combine(state, []) == (None, state, {})


def test_robust_aggregators_are_not_sums() -> None:
    from fedlab.aggregators import AGGREGATORS

    # Norm bounding clips each client where it trains, then sums: the one robust rule that is.
    summable = {name for name, entry in AGGREGATORS.items() if entry.summable}
    assert summable == {"mean", "norm_bounding"}


# --- on a real two-node Ray cluster -------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """One two-node cluster for the module's Ray tests, which are in xdist group ``ray-cluster``
    with tests/test_cluster.py: one worker runs them, one cluster at a time."""
    from tests.servers import private_network, ray_cluster

    with private_network(), ray_cluster() as ray:
        yield ray


def on_ray(cluster, actors: int = 2) -> list[str]:
    return ["placement=ray", f"placement.address={cluster.address}", f"placement.actors={actors}"]


def _final_state(cwd: Path) -> list[np.ndarray]:
    (path,) = (cwd / "checkpoints").glob("run-*.npz")
    with np.load(path) as npz:
        return [npz[k] for k in sorted(npz.files) if k.startswith("state_")]


def _series(cwd: Path) -> dict[str, list[tuple[int, float]]]:
    client, run = only_run(cwd)
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
        if not key.startswith("time/")
    }


_LOCAL_RUNS: dict[tuple[str, ...], Path] = {}


def local_run(args: list[str], base: Path) -> Path:
    """The directory of a single-process run of ``args`` (each config run once per module)."""
    key = tuple(args)
    if key not in _LOCAL_RUNS:
        cwd = base / f"local-{len(_LOCAL_RUNS)}"
        cwd.mkdir()
        result = run_cli(*args, cwd=cwd)
        assert result.returncode == 0, result.stderr[-3000:]
        _LOCAL_RUNS[key] = cwd
    return _LOCAL_RUNS[key]


def _max_differences(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[float, float]:
    diff = max(
        float(np.max(np.abs(a.astype(np.float64) - b), initial=0))
        for a, b in zip(got, want, strict=True)
    )
    scale = max(float(np.max(np.abs(b), initial=0)) for b in want)
    return diff, scale


COMBINATIONS = {
    "fedavg-mean": [],
    "fedprox": ["algorithm=fedprox", "algorithm.mu=0.1"],
    "scaffold": ["algorithm=scaffold"],
    # Clients of unequal sizes, so that FedNova's normalisation matters; FedDyn's h is built
    # from the updates, which come back from the actors beside their partial sums.
    "fednova": ["algorithm=fednova", "partition=quantity_skew"],
    "feddyn": ["algorithm=feddyn", "algorithm.alpha=0.1"],
    "dp_fedavg-adaptive": [
        "privacy=dp_fedavg",
        "privacy.noise_multiplier=0.5",
        "privacy.clip=0.5",
        "privacy.target_quantile=0.5",
        "privacy.clipped_count_stddev=1.0",
    ],
    "topk-error-feedback": [
        "compression=topk",
        "compression.k=2000",
        "compression.error_feedback=true",
    ],
    # An attack reaches the actors' clients: poisoned data (dataset_parts), boosted uploads
    # (each actor's ClientRunner), and norm bounding clips them where they train.
    "scaling-norm_bounding": ["attack=scaling", "attack.fraction=0.4", "aggregator=norm_bounding"],
    # Models of each client's own, trained on the actors; personalized evaluation here.
    "ditto": ["algorithm=ditto", "holdout=0.2"],
    "fedper": ["algorithm=fedper", "model=2nn", "holdout=0.2"],
}


@pytest.mark.slow
@pytest.mark.xdist_group("ray-cluster")  # with tests/test_cluster.py
@pytest.mark.parametrize("combination", COMBINATIONS.values(), ids=COMBINATIONS)
def test_rounds_over_two_actors_equal_the_single_process_rounds(
    cluster, combination: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    chosen = {c.split("=")[0] for c in combination}
    args = [*(a for a in SMALL if a.split("=")[0] not in chosen), *combination, "rounds=3"]
    local = local_run(args, tmp_path_factory.mktemp("local", numbered=True))
    spread = tmp_path_factory.mktemp("ray")
    result = run_cli(*args, *on_ray(cluster), cwd=spread)
    assert result.returncode == 0, result.stderr[-3000:]

    got, want = _final_state(spread), _final_state(local)
    assert [(a.shape, a.dtype) for a in got] == [(b.shape, b.dtype) for b in want]
    diff, scale = _max_differences(got, want)
    label = " ".join(combination) or "fedavg"
    print(f"{label}: max |ray - local| {diff:.3g} (largest |value| {scale:.3g})")
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=RTOL)

    ray_series, local_series = _series(spread), _series(local)
    assert ray_series.keys() == local_series.keys()
    for key, points in local_series.items():
        steps, values = zip(*points, strict=True)
        ray_steps, ray_values = zip(*ray_series[key], strict=True)
        assert ray_steps == steps, key
        if key == "train/loss":
            np.testing.assert_allclose(ray_values, values, rtol=1e-5, err_msg=key)
        elif key.startswith("eval/"):
            np.testing.assert_allclose(ray_values, values, atol=ACCURACY_ATOL, err_msg=key)
        elif key in ("train/examples_dropped",) or key.startswith("comm/"):
            assert ray_values == values, key
        else:  # accuracies, algorithm and aggregator metrics, privacy
            np.testing.assert_allclose(ray_values, values, rtol=1e-4, atol=1e-6, err_msg=key)

    # Both nodes trained clients: one actor on each (one CPU each), and each actor gets a slice
    # of every round (3 and 2 of the 5 clients).
    _, run = only_run(spread)
    nodes = run.data.tags["fedlab.placement.nodes"].split(",")
    assert sorted(nodes) == sorted([cluster.head.node_id, cluster.worker.node_id]), nodes
    assert run.data.tags["fedlab.placement.slice_sizes"] == "3,2"


@pytest.mark.slow
@pytest.mark.xdist_group("ray-cluster")  # with tests/test_cluster.py
def test_one_actor_is_the_single_process_run_bit_for_bit(
    cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The same additions in the same order, on another node: what differs with more actors is
    # only the order, not how a client is computed.
    args = [*SMALL, "rounds=3"]
    local = local_run(args, tmp_path_factory.mktemp("local", numbered=True))
    spread = tmp_path_factory.mktemp("ray1")
    result = run_cli(*args, *on_ray(cluster, actors=1), cwd=spread)
    assert result.returncode == 0, result.stderr[-3000:]
    for a, b in zip(_final_state(spread), _final_state(local), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _series(spread) == _series(local)


def _checkpointed_round(cwd: Path) -> int:
    """The round of ``cwd``'s checkpoint (0: none yet). It is renamed into place whole, so it can
    be read while the run writes the next one; MLflow's SQLite file cannot be opened while the
    run is still creating its tables."""
    found = list((cwd / "checkpoints").glob("run-*.npz"))
    if not found:
        return 0
    with np.load(found[0]) as npz:
        return json.loads(str(npz["meta"]))["round"]


def _wait_for_round(proc: subprocess.Popen, cwd: Path, at_least: int, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if _checkpointed_round(cwd) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"the run did not reach round {at_least} in {timeout} s")


@pytest.mark.slow
@pytest.mark.xdist_group("ray-cluster")  # with tests/test_cluster.py
def test_a_killed_run_resumed_on_the_same_placement_is_bit_identical(
    cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    args = [*SMALL, "rounds=40", *on_ray(cluster)]
    straight, resumed = tmp_path_factory.mktemp("straight"), tmp_path_factory.mktemp("resumed")
    result = run_cli(*args, cwd=straight)
    assert result.returncode == 0, result.stderr[-3000:]

    proc = subprocess.Popen(
        [sys.executable, "-m", "fedlab", *args],
        cwd=resumed,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_round(proc, resumed, at_least=3)
        os.killpg(proc.pid, signal.SIGKILL)  # no handler runs; Ray ends the dead driver's actors
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, killed = only_run(resumed)
    assert killed.info.status == "RUNNING"
    assert 3 <= _checkpointed_round(resumed) < 40  # killed in the middle

    again = run_cli(*args, cwd=resumed)
    assert again.returncode == 0, again.stderr[-3000:]
    _, run = only_run(resumed)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["fedlab.resumed"] == "true"
    assert _series(resumed) == _series(straight)  # every metric, bit for bit
    for a, b in zip(_final_state(resumed), _final_state(straight), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module", autouse=True)
def _forget_local_runs() -> Iterator[None]:
    yield
    _LOCAL_RUNS.clear()
