"""Sweeps beyond one machine, with real servers on loopback: PostgreSQL, an MLflow tracking
server on it (started by ``scripts/mlflow-server``), and a two-node Ray cluster.

Everything runs in a network namespace of the tests' own that holds only 127.0.0.1
(``tests/servers.py`` says why); each server is stopped by its own fixture, and leaving the
namespace fails the module if any process of it is still alive. What these tests show and what
they cannot (one machine plays every node) is in the README, "Running on a cluster".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, run_cli
from tests.servers import (
    Postgres,
    RayCluster,
    Server,
    all_runs,
    free_port,
    get,
    metric_steps,
    params,
    postgres_cluster,
    private_network,
    ray_cluster,
    start_mlflow_server,
    stop_group,
    tags,
)

# One worker runs the whole module (its servers are module fixtures), and with it the Ray
# tests of test_placement.py: one Ray cluster on the machine at a time.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-cluster")]

# The smallest real work: logistic regression, plain FedAvg, 5 clients a round (engine=fast).
SMALL = [
    "model=logreg",
    "client_optimizer=sgd",
    "server_optimizer=sgd",
    "C=0.05",
    "B=50",
    "tracking.log_model=false",
]
GRID = ["partition=iid,shards", "E=1,2"]
JOB_NAMES = {f"partition={p},E={e}" for p in ("iid", "shards") for e in (1, 2)}


@pytest.fixture(scope="module")
def network() -> Iterator[str]:
    with private_network() as namespace:
        yield namespace


@pytest.fixture(scope="module")
def postgres(network: str) -> Iterator[Postgres]:
    with postgres_cluster() as pg:
        pg.create_database("mlflow")
        pg.create_database("optuna")
        yield pg


@pytest.fixture(scope="module")
def tracking(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``scripts/mlflow-server`` on the PostgreSQL backend; its password only in PGPASSWORD."""
    root = tmp_path_factory.mktemp("mlflow_pg")
    command = [
        str(REPO / "scripts" / "mlflow-server"),
        postgres.url("mlflow"),
        str(root / "artifacts"),
        "--port",
        str(free_port()),
    ]
    server = start_mlflow_server(command, cwd=root, env=postgres.env)
    try:
        yield server
    finally:
        stop_group(server.proc)


@pytest.fixture(scope="module")
def cluster(network: str) -> Iterator[RayCluster]:
    with ray_cluster() as ray:
        yield ray


def ray_launcher(cluster: RayCluster) -> list[str]:
    return ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster.address}"]


def sweep_runs(server: Server, sweep_id: str, experiment: str = "fedlab"):
    """The sweep's (one, active) parent run and the runs nested under it."""
    runs = [r for r in all_runs(server, experiment) if r["info"]["lifecycle_stage"] == "active"]
    parents = [
        r
        for r in runs
        if tags(r).get("fedlab.role") == "sweep" and tags(r).get("fedlab.sweep_id") == sweep_id
    ]
    assert len(parents) == 1, [r["info"]["run_name"] for r in parents]
    parent = parents[0]
    jobs = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    return parent, jobs


def artifact_paths(server: Server, run_id: str, path: str = "") -> set[str]:
    listing = get(server, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path=path)
    return {f["path"] for f in listing.get("files", [])}


def check_grid(server: Server, sweep_id: str, rounds: int, launcher: str) -> list[dict]:
    """The 2×2 grid is one FINISHED parent with its four FINISHED jobs nested under it, each
    with every round's metrics once, the best job and the report on the parent."""
    parent, jobs = sweep_runs(server, sweep_id)
    parent_tags = tags(parent)
    assert parent["info"]["status"] == "FINISHED"
    assert parent_tags["fedlab.launcher"] == launcher
    assert parent_tags["fedlab.swept_keys"] == "partition,E"
    assert parent_tags["fedlab.jobs"] == "4" and parent_tags["fedlab.jobs_failed"] == "0"
    assert {r["info"]["run_name"] for r in jobs} == JOB_NAMES
    assert sorted(int(tags(r)["fedlab.job_num"]) for r in jobs) == [0, 1, 2, 3]
    for run in jobs:
        assert run["info"]["status"] == "FINISHED", run["info"]
        assert tags(run)["fedlab.sweep_id"] == sweep_id
        steps = metric_steps(server, run["info"]["run_id"], "eval/accuracy")
        assert steps == list(range(rounds + 1)), (run["info"]["run_name"], steps)
    assert parent_tags["best.run_id"] in {r["info"]["run_id"] for r in jobs}
    report = artifact_paths(server, parent["info"]["run_id"], "report")
    assert {"report/summary.md", "report/test_accuracy.png"} <= report, report
    return jobs


def test_a_grid_on_a_two_node_ray_cluster_is_one_parent_with_jobs_from_both_nodes(
    tracking: Server, cluster: RayCluster, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"  # absolute: a Ray worker may run in another directory
    result = run_cli(
        "-m",
        *SMALL,
        "rounds=2",
        *GRID,
        *ray_launcher(cluster),
        f"tracking.uri={tracking.url}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = check_grid(tracking, str(sweep_dir), rounds=2, launcher="ray")
    nodes = {tags(run)["fedlab.node"] for run in jobs}
    assert nodes == {cluster.head.node_id, cluster.worker.node_id}, nodes
    # Each job ran in a Ray worker process of its own (max_calls=1).
    assert len({tags(run)["fedlab.pid"] for run in jobs}) == 4


def test_the_same_grid_through_submitit_local(tracking: Server, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *SMALL,
        "rounds=2",
        *GRID,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20",
        "hardware.intra_op_threads=1",
        f"tracking.uri={tracking.url}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = check_grid(tracking, str(sweep_dir), rounds=2, launcher="submitit_local")
    # submitit starts each job as a process of its own.
    assert len({tags(run)["fedlab.pid"] for run in jobs}) == 4
    assert str(os.getpid()) not in {tags(run)["fedlab.pid"] for run in jobs}


def test_two_optuna_drivers_add_trials_to_one_postgresql_study(
    postgres: Postgres, tracking: Server, tmp_path: Path
) -> None:
    import optuna

    trials_each = 3
    storage = postgres.url("optuna", driver="postgresql+psycopg2")
    command = [
        sys.executable,
        "-m",
        "fedlab",
        "-m",
        *SMALL,
        "rounds=1",
        "hparams_search=lr",
        "+hydra/sweeper/storage=postgresql",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.n_trials={trials_each}",
        f"tracking.uri={tracking.url}",
    ]
    drivers = []
    for name in ("a", "b"):  # two machines: each its own directory, one study, one server
        cwd = tmp_path / name
        cwd.mkdir()
        drivers.append(
            subprocess.Popen(
                command,
                cwd=cwd,
                env=cli_env(**postgres.env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [driver.communicate(timeout=600) for driver in drivers]
    for driver, (out, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err[-3000:]
        assert postgres.password not in out + err

    name = "fedlab-lr-iid-logreg-sgd-sgd"
    study = optuna.load_study(
        study_name=name,
        storage=optuna.storages.RDBStorage(
            storage, engine_kwargs={"connect_args": {"password": postgres.password}}
        ),
    )
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(2 * trials_each)), numbers
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    # One parent for the study (the drivers agree on the oldest), a run per trial under it.
    parent, jobs = sweep_runs(tracking, f"multirun/{name}")
    assert parent["info"]["status"] == "FINISHED"
    runs = {run["info"]["run_id"]: run for run in jobs}
    for trial in study.trials:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert tags(run)["fedlab.trial"] == str(trial.number)
        assert float(params(run)["client_optimizer.lr"]) == pytest.approx(
            trial.params["client_optimizer.lr"]
        )
    assert len(jobs) == 2 * trials_each
    assert tags(parent)["fedlab.study_storage"] == storage


def test_restarting_postgresql_under_the_tracking_server_loses_no_metric(
    postgres: Postgres, tracking: Server, tmp_path: Path
) -> None:
    rounds = 60
    experiment = "pg-restart"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedlab",
            *SMALL,
            f"rounds={rounds}",
            f"tracking.uri={tracking.url}",
            f"tracking.experiment={experiment}",
        ],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = wait_for_step(tracking, proc, experiment, at_least=3)
        postgres.ctl("restart", "-m", "fast")
        assert proc.poll() is None, "the run ended before PostgreSQL had restarted"
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    (run,) = all_runs(tracking, experiment)
    assert run["info"]["run_id"] == run_id and run["info"]["status"] == "FINISHED"
    for key, first in (("train/loss", 1), ("eval/accuracy", 0), ("comm/total_mb", 1)):
        assert metric_steps(tracking, run_id, key) == list(range(first, rounds + 1)), key


def wait_for_step(
    server: Server,
    proc: subprocess.Popen,
    experiment: str,
    at_least: int,
    node: str | None = None,
    timeout: float = 300,
) -> str:
    """The id of a run in ``experiment`` (on Ray node ``node``) with round ``at_least`` in
    MLflow, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            runs = all_runs(server, experiment)
        except urllib.error.HTTPError:  # the experiment does not exist yet
            runs = []
        for run in runs:
            if tags(run).get("fedlab.role") == "sweep":
                continue
            if node is not None and tags(run).get("fedlab.node") != node:
                continue
            steps = metric_steps(server, run["info"]["run_id"], "train/loss")
            if steps and steps[-1] >= at_least:
                return run["info"]["run_id"]
        time.sleep(0.5)
    raise AssertionError(f"no run reached round {at_least} in {timeout} s")


def test_a_job_on_a_killed_ray_node_is_retried_from_its_checkpoint(
    tracking: Server, cluster: RayCluster, tmp_path: Path
) -> None:
    rounds = 40
    experiment = "ray-fault"
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m",
        *SMALL,
        f"rounds={rounds}",
        *GRID,
        *ray_launcher(cluster),
        f"tracking.uri={tracking.url}",
        f"tracking.experiment={experiment}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    driver = subprocess.Popen(
        [sys.executable, "-m", "fedlab", *args],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        victim = wait_for_step(
            tracking, driver, experiment, at_least=2, node=cluster.worker.node_id
        )
        # The worker node dies at once, as a machine that loses power: every process of it.
        for pid in cluster.worker.pids():
            os.kill(pid, signal.SIGKILL)
        out, err = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, err[-3000:]
    parent, jobs = sweep_runs(tracking, str(sweep_dir), experiment)
    assert parent["info"]["status"] == "FINISHED"
    assert tags(parent)["fedlab.jobs"] == "4" and tags(parent)["fedlab.jobs_failed"] == "0"
    assert {r["info"]["status"] for r in jobs} == {"FINISHED"}
    assert {r["info"]["run_name"] for r in jobs} == JOB_NAMES
    # Ray ran the lost job again on the head node; it continued its own run from the last
    # checkpoint, so each round is in MLflow once.
    (killed,) = [r for r in jobs if r["info"]["run_id"] == victim]
    assert tags(killed).get("fedlab.resumed") == "true"
    assert metric_steps(tracking, victim, "train/loss") == list(range(1, rounds + 1))
    assert metric_steps(tracking, victim, "eval/accuracy") == list(range(rounds + 1))

    # Running the sweep again finds every job done: no new run, the parent FINISHED again.
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("nothing left to run") == 4
    parent, jobs_again = sweep_runs(tracking, str(sweep_dir), experiment)
    assert parent["info"]["status"] == "FINISHED"
    assert {r["info"]["run_id"] for r in jobs_again} == {r["info"]["run_id"] for r in jobs}


def test_no_param_tag_or_config_artifact_holds_the_database_password(
    postgres: Postgres, tracking: Server
) -> None:
    experiments = ("fedlab", "pg-restart", "ray-fault")
    runs = [run for experiment in experiments for run in all_runs(tracking, experiment)]
    assert len(runs) >= 10  # the sweeps and runs above
    for run in runs:
        recorded = {**params(run), **tags(run), "run_name": run["info"]["run_name"]}
        leaks = [key for key, value in recorded.items() if postgres.password in value]
        assert not leaks, (run["info"]["run_name"], leaks)
        if tags(run).get("fedlab.role") == "job":
            run_id = run["info"]["run_id"]
            query = urllib.parse.urlencode({"run_uuid": run_id, "path": "config.yaml"})
            with urllib.request.urlopen(f"{tracking.url}/get-artifact?{query}") as response:
                assert postgres.password not in response.read().decode()
    assert postgres.password not in tracking.log.read_text(errors="replace")
