"""Sweeps: a grid or an Optuna search is one unit in MLflow (a parent run, its jobs nested under
it), Optuna studies persist and continue, a parallel launcher shares the SQLite store, and every
paper preset composes (fast) and runs (slow)."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.tracking import MlflowClient

from fedlab import sweep
from fedlab.config import Objective
from fedlab.experiment import RunResult
from fedlab.validation import typed
from tests.conftest import CONF, QUICK, run_cli, start_cli, wait_for_round

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# Runs in each preset's grid (`python -m fedlab -m experiment=NAME`).
PRESET_GRID_SIZES = {
    "compression_bits": 4,  # quantization bits
    "fedprox_mu": 5,  # FedProx's mu
    "dp_noise": 5,  # noise multipliers
    "figure2": 18,  # partition × B × E
    "noniid_algorithms": 9,  # FedAvg, FedProx, SCAFFOLD × 3 seeds
    "personalized_shards": 21,  # 7 algorithms × 3 seeds
    "personalized_dirichlet": 21,
    "notebook": 1,
    "notebook_noniid": 1,
    "byzantine": 3456,  # model × partition × 9 aggregators × 8 attacks × 4 fractions × 3 seeds
    "reddi_emnist": 1,  # one method a run; the others are in its comments
    "server_optimizers": 15,  # 5 server optimizers × 3 seeds
    "table1_2nn": 20,  # partition × B × C
    "table1_cnn": 20,
    "table2_cnn": 18,  # partition × E × B (FedSGD is E=1, B=∞)
    "table2_shakespeare": 4,  # partition × B (FedSGD and FedAvg E=1 B=10)
    "cifar_fedavg": 1,
    "cifar_fedsgd": 1,
    # Reddi et al.'s rows: one preset each, since a method's client and server rates go together
    # and a grid crosses every value with every other; the base preset's comments give the glob
    # that runs them all (tests/test_paper.py checks it selects each row once).
    **{f"reddi_cifar10{m}": 1 for m in ("", "_fedavgm", "_fedadam", "_fedyogi", "_fedadagrad")},
    **{
        f"reddi_cifar100{m}": 1
        for m in ("", "_fedavg", "_fedavgm", "_fedadam", "_fedyogi", "_fedadagrad")
    },
}
TINY = [*QUICK, "rounds=1", "tracking.log_model=false"]
# Presets whose dataset is a file no test machine has: their own tests run them for a round on a
# small file in the real format.
RUN_ELSEWHERE = {
    "reddi_emnist": "tests/test_emnist.py",
    "cifar_fedavg": "tests/test_cifar_cnn.py",
    "cifar_fedsgd": "tests/test_cifar_cnn.py",
    **{
        name: "no test: a ResNet-18 round on CIFAR-sized data is too slow for CI"
        for name in PRESET_GRID_SIZES
        if name.startswith("reddi_cifar")
    },
}


def _store(cwd: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(tracking_uri=sweep.default_tracking_uri(cwd))
    return client, client.get_experiment_by_name("fedlab").experiment_id


def _parent_and_children(cwd: Path):
    client, experiment = _store(cwd)
    parents = client.search_runs([experiment], "tags.`fedlab.role` = 'sweep'")
    assert len(parents) == 1, [p.info.run_name for p in parents]
    parent = parents[0]
    jobs = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return client, parent, sorted(jobs, key=lambda r: int(r.data.tags[sweep.JOB_TAG]))


def test_swept_keys_come_from_the_command_line_and_the_sweeper_params() -> None:
    overrides = ["partition=iid,shards", "C=0.1", "E=range(1,3)", "seed=0", "B=choice(10, 50)"]
    assert sweep.swept_keys(overrides, {"client_optimizer.lr": "tag(log, ...)"}) == [
        "partition",
        "E",
        "B",
        "client_optimizer.lr",
    ]
    assert sweep.swept_keys(["C=0.1"], None) == []


def test_a_job_is_named_from_its_swept_overrides() -> None:
    job = ["model=2nn", "partition=shards", "C=0.1", "rounds=2"]
    assert sweep.job_name(job, ["partition", "C"]) == "partition=shards,C=0.1"
    assert sweep.job_name(job, []) == "model=2nn,partition=shards,C=0.1,rounds=2"
    assert sweep.job_name([], []) == "defaults"


@pytest.mark.parametrize(
    ("objective", "reached", "expected"),
    [
        (Objective.best_accuracy, 7, 0.95),
        (Objective.final_accuracy, 7, 0.9),
        (Objective.rounds_to_target, 7, 7.0),
        (Objective.rounds_to_target, None, 21.0),  # never reached: worse than any that did
    ],
)
def test_the_objective_a_sweeper_sees(objective, reached, expected) -> None:
    result = RunResult(
        rounds=20,
        final_accuracy=0.9,
        best_accuracy=0.95,
        rounds_to_target=reached,
        total_mb=1.0,
        wall_s=1.0,
        history={},
        location=None,
    )
    assert sweep.objective_value(objective, result, rounds=20) == expected


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_its_grid(preset: str, compose_cfg) -> None:

    cfg = compose_cfg(f"experiment={preset}")
    from fedlab.config import RunConfig

    typed_cfg: RunConfig = typed(cfg)  # range and cross-field checks too
    assert typed_cfg.rounds >= 1
    # The preset says what it reproduces (its comment block) and sweeps a grid of known size.
    text = (CONF / "experiment" / f"{preset}.yaml").read_text()
    assert "McMahan et al. 2017" in text or "Reddi et al. 2021" in text
    assert sorted(PRESET_GRID_SIZES) == PRESETS
    params = compose_cfg(f"experiment={preset}", hydra=True).hydra.sweeper.params or {}
    parser = OverridesParser.create()
    choices = [
        list(parser.parse_override(f"{key}={value}").sweep_string_iterator())
        for key, value in params.items()
    ]
    assert len(list(itertools.product(*choices))) == PRESET_GRID_SIZES[preset]


def test_the_optuna_plugins_deprecation_warnings_are_silenced() -> None:
    """hydra-optuna-sweeper 1.3 makes Optuna's pre-3.0 distributions, and Optuna 5 warns at
    each (two lines a trial); fedlab's entry point silences exactly those."""
    import warnings

    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    from fedlab.quiet import silence_sweeper_plugins

    search = ["a=tag(log, interval(1e-3, 1))", "b=range(1,3)", "c=interval(0, 1)"]

    def make_and_read_back() -> None:
        # The driver makes them; each job reads them back from the study's storage.
        made, _ = create_params_from_overrides(search)
        for distribution in made.values():
            optuna.distributions.json_to_distribution(
                optuna.distributions.distribution_to_json(distribution)
            )

    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("always")
        make_and_read_back()
    assert any("LogUniformDistribution has been deprecated" in str(w.message) for w in before)
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("always")
        silence_sweeper_plugins()
        make_and_read_back()
        warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)  # still shown
    assert [str(w.message) for w in after] == ["another FutureWarning"]


def test_optuna_searches_compose_with_a_persistent_study(compose_cfg) -> None:
    for search in ("lr", "rounds_to_target"):
        cfg = compose_cfg(f"hparams_search={search}", hydra=True)
        sweeper = cfg.hydra.sweeper
        assert "optuna" in sweeper._target_.lower()
        assert sweeper.storage.startswith("sqlite:///") and sweeper.study_name
        assert sweeper.max_failure_rate == 1.0  # a diverging trial must not end the study
        want = "minimize" if cfg.objective == "rounds_to_target" else "maximize"
        assert sweeper.direction == want
    # Without a search the plain grid sweeper stays in charge.
    assert "basic" in compose_cfg(hydra=True).hydra.sweeper._target_.lower()


def test_a_search_that_optimizes_the_wrong_way_is_refused(tmp_path: Path) -> None:
    result = run_cli("-m", *TINY, "hparams_search=lr", "objective=rounds_to_target", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "fedlab: error: hydra.sweeper.direction=maximize does not fit "
        "objective=rounds_to_target; allowed: hydra.sweeper.direction=minimize"
    )


@pytest.mark.slow
def test_a_grid_is_one_parent_run_with_its_jobs_nested(tmp_path: Path) -> None:
    result = run_cli("-m", *TINY, "rounds=2", "partition=iid,shards", "E=1,2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, jobs = _parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fedlab.swept_keys"] == "partition,E"
    assert parent.data.tags["fedlab.jobs"] == "4" and parent.data.tags["fedlab.jobs_failed"] == "0"
    names = {j.info.run_name for j in jobs}
    assert names == {
        "partition=iid,E=1",
        "partition=iid,E=2",
        "partition=shards,E=1",
        "partition=shards,E=2",
    }
    sweep_id = parent.data.tags[sweep.SWEEP_TAG]
    for num, job in enumerate(jobs):
        assert job.info.status == "FINISHED"
        assert job.data.tags[sweep.JOB_TAG] == str(num)
        assert job.data.tags[sweep.SWEEP_TAG] == sweep_id
        steps = [m.step for m in client.get_metric_history(job.info.run_id, "eval/accuracy")]
        assert sorted(steps) == [0, 1, 2]
        # Each job logs to a file of its own (fedlab/logs.py), named on its run and attached
        # to it, and the sweep says where each is.
        log_file = Path(job.data.tags[sweep.LOG_TAG])
        assert log_file.name == "__main__.log" and log_file.parent.name == str(num)
        assert "round 2: test accuracy" in log_file.read_text()
        assert f"#{num} {job.info.run_name} (FINISHED): {log_file}" in result.stderr
        artifacts = {a.path for a in client.list_artifacts(job.info.run_id)}
        assert "__main__.log" in artifacts
    # The best job by the objective (best test accuracy) is named on the parent.
    best = max(jobs, key=lambda j: j.data.metrics["eval/best_accuracy"])
    assert parent.data.tags["best.run_id"] == best.info.run_id
    assert parent.data.metrics["best_value"] == best.data.metrics["eval/best_accuracy"]


@pytest.mark.slow
def test_an_optuna_search_persists_and_a_second_invocation_continues_it(tmp_path: Path) -> None:
    search = ["hparams_search=lr", "hydra.sweeper.n_trials=3", "seed=3"]
    first = run_cli("-m", *TINY, *search, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "deprecated" not in first.stderr + first.stdout  # the plug-in's FutureWarnings
    name = "fedlab-lr-iid-2nn-sgd-sgd"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == 3
    second = run_cli("-m", *TINY, *search[:1], "hydra.sweeper.n_trials=2", "seed=3", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name=name, storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    # One parent run for the study, reopened by the second invocation; a run per trial,
    # tagged with its trial number and linked from the trial.
    client, parent, jobs = _parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fedlab.study_name"] == name
    trials = {int(j.data.tags[sweep.TRIAL_TAG]): j.info.run_id for j in jobs}
    assert sorted(trials) == [0, 1, 2, 3, 4]
    for trial in study.trials:
        assert trial.user_attrs["mlflow_run_id"] == trials[trial.number]
        run = client.get_run(trials[trial.number])
        assert float(run.data.params["client_optimizer.lr"]) == pytest.approx(
            trial.params["client_optimizer.lr"]
        )
        assert run.data.metrics["eval/best_accuracy"] == pytest.approx(trial.value)
    # The study's best parameters and value are on the parent run.
    best = study.best_trial
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    for key, value in best.params.items():
        assert float(parent.data.tags[f"best.{key}"]) == pytest.approx(value)


@pytest.mark.slow
def test_a_parallel_launcher_shares_one_new_sqlite_store(tmp_path: Path) -> None:
    # hydra-joblib-launcher runs the jobs in worker processes at the same time; they all find
    # no mlflow.db. None may fail ("database is locked") or lose a metric step.
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "hardware.intra_op_threads=1"]
    result = run_cli(
        "-m",
        *TINY,
        *parallel,
        "model=logreg",
        "rounds=5",
        "seed=1,2,3",
        "checkpoint_every=0",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stderr
    client, parent, jobs = _parent_and_children(tmp_path)
    assert parent.data.tags["fedlab.launcher"] == "joblib"
    assert len(jobs) == 3 and {j.info.status for j in jobs} == {"FINISHED"}
    for job in jobs:
        for key in ("train/loss", "eval/accuracy", "comm/total_mb"):
            steps = sorted(m.step for m in client.get_metric_history(job.info.run_id, key))
            assert steps == list(range(0 if key.startswith("eval") else 1, 6)), (key, steps)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_for_a_round(preset: str, tmp_path: Path) -> None:
    if preset in RUN_ELSEWHERE:
        pytest.skip(f"needs its dataset's file; {RUN_ELSEWHERE[preset]} runs it on a small one")
    result = run_cli(f"experiment={preset}", "rounds=1", "tracking.log_model=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "After 1 rounds" in result.stdout


def test_a_sweep_with_an_unreachable_store_stops_before_its_first_job(tmp_path: Path) -> None:
    result = run_cli("-m", *TINY, "seed=0,1", "tracking.uri=http://127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fedlab: error: tracking.uri=http://127.0.0.1:9 is unreachable")
    assert "Launching" not in result.stderr + result.stdout  # no job started
    assert "Traceback" not in result.stderr


def test_an_unreachable_study_database_stops_the_search_before_its_first_job(
    tmp_path: Path,
) -> None:
    storage = "postgresql+psycopg2://fedlab@127.0.0.1:9/optuna"
    result = run_cli(
        "-m", *TINY, "hparams_search=lr", "+hydra/sweeper/storage=postgresql",
        f"hydra.sweeper.storage={storage}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fedlab: error: hydra.sweeper.storage={storage} is unreachable (")
    assert "Traceback" not in result.stderr
    assert "Launching" not in result.stderr + result.stdout  # no job started


def test_the_study_database_is_created_before_the_sweeper_opens_it(tmp_path: Path) -> None:
    """Two drivers opening one new database race in Optuna's unguarded schema creation; each
    creates it first, retrying if the other won (test_cluster runs two drivers on PostgreSQL).
    Here: a real SQLite database gets Optuna's schema, again without harm, and a journal file's
    storage object (no schema) is left alone."""
    from omegaconf import OmegaConf

    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep.prepare_study_storage(url)
    sweep.prepare_study_storage(url)  # already there: nothing to do, nothing fails
    assert optuna.get_all_study_summaries(storage=url) == []  # the schema, and no study yet
    journal = OmegaConf.create({"_target_": "optuna.storages.JournalStorage"})
    sweep.prepare_study_storage(journal)
    sweep.prepare_study_storage(None)  # an in-memory study
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


@pytest.mark.slow
def test_an_interrupted_sweep_leaves_no_run_running(tmp_path: Path) -> None:
    proc = start_cli(tmp_path, "-m", "rounds=200", "tracking.log_model=false", "seed=0,1")
    wait_for_round(proc, tmp_path, at_least=1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    client, parent, jobs = _parent_and_children(tmp_path)
    # The job in flight and the sweep are KILLED; the job that never started has no run.
    assert parent.info.status == "KILLED"
    assert [j.info.status for j in jobs] == ["KILLED"]
    assert "before all its jobs had run" in parent.data.tags["fedlab.failure"]


@pytest.mark.slow
def test_a_local_sweep_imports_no_cluster_library(tmp_path: Path) -> None:
    from tests.test_layout import _imported_at_run_time

    modules = _imported_at_run_time("-m", *TINY, "engine=fast", "seed=0,1", cwd=tmp_path)
    assert "tensorflow" in modules  # it did run
    assert not {m for m in modules if m.split(".")[0] in ("ray", "submitit", "psycopg2")}


@pytest.mark.slow
def test_an_optuna_study_in_a_journal_file(tmp_path: Path) -> None:
    search = [
        "hparams_search=lr",
        "+hydra/sweeper/storage=journal",
        "hydra.sweeper.storage.log_storage.file_path=study.journal",
        "hydra.sweeper.n_trials=2",
    ]
    result = run_cli("-m", *TINY, "engine=fast", *search, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))
    )
    study = optuna.load_study(study_name="fedlab-lr-iid-2nn-sgd-sgd", storage=journal)
    assert [t.number for t in study.trials] == [0, 1]
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    client, parent, jobs = _parent_and_children(tmp_path)
    assert parent.data.tags["fedlab.study_storage"] == "JournalStorage(study.journal)"
    runs = {j.info.run_id: j for j in jobs}
    for trial in study.trials:
        assert runs[trial.user_attrs["mlflow_run_id"]].data.tags[sweep.TRIAL_TAG] == str(
            trial.number
        )


def test_the_cluster_presets_compose(compose_cfg) -> None:
    ray = compose_cfg("hydra/launcher=ray", hydra=True).hydra.launcher
    assert ray._target_.endswith("RayLauncher")
    # Hydra #2893: Ray refuses object_store_memory when it joins a running cluster.
    assert "object_store_memory" in ray.ray.init and ray.ray.init.object_store_memory is None
    assert ray.ray.remote.max_calls == 1 and ray.ray.remote.num_cpus == 1
    for launcher in ("submitit_local", "submitit_slurm"):
        node = compose_cfg(f"hydra/launcher={launcher}", hydra=True).hydra.launcher
        assert "submitit" in node._target_
    assert compose_cfg("tracking=server").tracking.uri == "http://127.0.0.1:5000"
    pg = compose_cfg("hparams_search=lr", "+hydra/sweeper/storage=postgresql", hydra=True)
    assert pg.hydra.sweeper.storage == "postgresql+psycopg2://fedlab@127.0.0.1:5432/optuna"
    journal = compose_cfg("hparams_search=lr", "+hydra/sweeper/storage=journal", hydra=True)
    assert journal.hydra.sweeper.storage._target_ == "optuna.storages.JournalStorage"
    assert sweep.storage_label(journal.hydra.sweeper.storage) == "JournalStorage(optuna.journal)"


@pytest.mark.slow
def test_a_sweep_into_a_new_store_runs_a_config_another_store_has_finished(
    tmp_path: Path,
) -> None:
    """Issue 23 as a new user met it: a single run tracked in one store left its checkpoint in
    ./checkpoints; a grid sweep into a new store then answered "nothing left to run" for that
    configuration, logged nothing for it, and reported 1 run in 1 configuration."""
    single = run_cli(*TINY, "partition=iid", "tracking.uri=sqlite:///other.db", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    result = run_cli("-m", *TINY, "partition=iid,shards", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing left to run" not in result.stderr + result.stdout
    client, parent, jobs = _parent_and_children(tmp_path)
    assert [j.data.params["partition.name"] for j in jobs] == ["iid", "shards"]
    assert all(j.info.status == "FINISHED" and "eval/accuracy" in j.data.metrics for j in jobs)
    assert "2 runs in 2 configurations" in result.stdout
    # The other store keeps its own run, untouched.
    other = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'other.db'}")
    experiment = other.get_experiment_by_name("fedlab").experiment_id
    assert len(other.search_runs([experiment])) == 1
