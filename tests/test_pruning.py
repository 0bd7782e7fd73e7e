"""Pruning in an Optuna search (fedlab/callbacks/pruning.py): a trial reports its evaluated
accuracy after each round to its trial in the study's real storage (SQLite), stops when the
pruner says so, ends PRUNED in Optuna and FINISHED (tagged pruned) in MLflow; the sweeper's own
tell afterwards leaves it so. Bad pruning configs are one line."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from fedlab import sweep
from fedlab.callbacks.pruning import PRUNED_AT_TAG, PRUNED_TAG, TrialLink
from fedlab.errors import ConfigError
from fedlab.experiment import run
from fedlab.tracking.mlflow import MlflowTracker
from tests.conftest import checked, run_cli

# A small run: the 2NN, 5 clients a round, client SGD at a rate too small to learn in 3 rounds,
# so its test accuracy stays near chance, far below the earlier trials'.
SLOW_LEARNER = [
    "model=2nn",
    "client_optimizer=sgd",
    "server_optimizer=sgd",
    "client_optimizer.lr=1e-6",
    "C=0.05",
    "B=50",
    "rounds=3",
    "tracking.log_model=false",
]


def _study(tmp_path: Path, finished: int = 3, accuracy: float = 0.9) -> tuple[str, str]:
    """A study in SQLite with ``finished`` complete trials that reached ``accuracy`` at rounds
    1 to 3, as earlier trials of a search would have; returns its storage URL and name."""
    storage, name = f"sqlite:///{tmp_path / 'optuna.db'}", "search"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for _ in range(finished):
        study.add_trial(
            optuna.trial.create_trial(
                value=accuracy,
                intermediate_values={1: accuracy, 2: accuracy, 3: accuracy},
            )
        )
    return storage, name


def _run(tmp_path: Path, link: TrialLink | None, *overrides: str):
    cfg = checked(*SLOW_LEARNER, "+callbacks.pruning.pruner=median",
                  "+callbacks.pruning.pruner_args.n_startup_trials=2", *overrides)  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "fedlab")
    result = run(cfg, output_dir=tmp_path / "out", tracker=tracker, trial=link,
                 checkpoint_dir=tmp_path / "checkpoints", progress=False)  # fmt: skip
    return result, MlflowClient(uri).get_run(tracker.run_id)


def test_a_trial_worse_than_the_median_is_pruned_and_the_sweeper_leaves_it_so(
    tmp_path: Path,
) -> None:
    storage, name = _study(tmp_path)
    study = optuna.load_study(study_name=name, storage=storage)
    number = study.ask().number  # the trial the sweeper asked for this job
    result, recorded = _run(tmp_path, TrialLink(storage, name, number))

    # Optuna: PRUNED after round 1, its value the last intermediate value (Optuna's rule).
    trial = optuna.load_study(study_name=name, storage=storage).trials[number]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    assert trial.value == pytest.approx(trial.intermediate_values[1])
    assert trial.intermediate_values[1] == pytest.approx(result.final_accuracy)
    assert trial.user_attrs["mlflow_run_id"] == recorded.info.run_id
    # The run stopped there, and says why; MLflow has it FINISHED, tagged pruned.
    assert result.rounds == 1 and result.stopped.startswith("pruned by Optuna's median pruner")
    assert "Stopped early: pruned by Optuna's median pruner at round 1 of 3" in result.summary()
    assert recorded.info.status == "FINISHED"
    assert recorded.data.tags[PRUNED_TAG] == "true" and recorded.data.tags[PRUNED_AT_TAG] == "1"
    assert "pruned" in recorded.data.tags["mlflow.note.content"]
    (saved,) = (tmp_path / "checkpoints").glob("run-*.npz")  # its state at round 1 is kept

    # The sweeper then tells the trial COMPLETE with the job's value: Optuna refuses to tell a
    # finished trial, which would stop the search; the driver's tell leaves it PRUNED.
    with pytest.raises(ValueError, match="Cannot tell a PRUNED trial"):
        sweep_study = optuna.load_study(study_name=name, storage=storage)
        sweep.let_jobs_prune_their_trials()
        optuna.study.Study.tell.__wrapped__(sweep_study, number, 0.1)
    sweep_study.tell(number, 0.1)  # as hydra-optuna-sweeper does
    after = optuna.load_study(study_name=name, storage=storage).trials[number]
    assert after.state == optuna.trial.TrialState.PRUNED and after.value == trial.value
    running = sweep_study.ask().number  # any other trial is told as before
    sweep_study.tell(running, 0.5)
    assert sweep_study.trials[running].state == optuna.trial.TrialState.COMPLETE


def test_a_trial_as_good_as_the_others_runs_to_the_end(tmp_path: Path) -> None:
    storage, name = _study(tmp_path, accuracy=0.0)  # earlier trials learnt nothing
    number = optuna.load_study(study_name=name, storage=storage).ask().number
    result, recorded = _run(tmp_path, TrialLink(storage, name, number))
    assert result.rounds == 3 and result.stopped is None
    assert PRUNED_TAG not in recorded.data.tags
    trial = optuna.load_study(study_name=name, storage=storage).trials[number]
    assert trial.state == optuna.trial.TrialState.RUNNING  # the sweeper tells it COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2, 3]


def test_a_metric_the_run_never_logs_is_a_warning_and_nothing_is_lost(
    tmp_path: Path, caplog
) -> None:
    storage, name = _study(tmp_path)
    number = optuna.load_study(study_name=name, storage=storage).ask().number
    with caplog.at_level("WARNING", logger="fedlab"):
        result, recorded = _run(
            tmp_path, TrialLink(storage, name, number), "+callbacks.pruning.metric=eval/acuracy"
        )
    (warning,) = [r.getMessage() for r in caplog.records if "pruning" in r.getMessage()]
    assert warning.startswith("callbacks.pruning.metric=eval/acuracy is not a metric this run")
    assert "eval/accuracy" in warning  # what it could have been
    assert result.rounds == 3  # not pruned: it ran to the end, every round logged
    assert recorded.data.tags["fedlab.pruning"].startswith("off: ")
    steps = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(
        recorded.info.run_id, "eval/accuracy"
    )
    assert sorted(m.step for m in steps) == [0, 1, 2, 3]


def test_outside_an_optuna_search_there_is_nothing_to_prune(tmp_path: Path) -> None:
    result, recorded = _run(tmp_path, None)
    assert result.rounds == 3 and PRUNED_TAG not in recorded.data.tags


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["callbacks.pruning.pruner=medain"],
            "callbacks.pruning.pruner='medain' is unknown; allowed: none, median, percentile, "
            "successive_halving, threshold",
        ),
        (
            ["+callbacks.pruning.pruner_args.patience=3"],
            "callbacks.pruning.pruner_args.patience is not an argument of the median pruner "
            "(optuna.pruners.MedianPruner); allowed: n_startup_trials, n_warmup_steps, "
            "interval_steps, n_min_trials",
        ),
        (
            ["+callbacks.pruning.pruner_args.n_startup_trials=-1"],
            "callbacks.pruning.pruner_args={'n_startup_trials': -1} is invalid for the median "
            "pruner: Number of startup trials cannot be negative",
        ),
        (
            ["callbacks.pruning.metric=eval/loss"],
            "callbacks.pruning.metric=eval/loss falls as a run improves, and "
            "objective=best_accuracy is maximized",
        ),
    ],
)
def test_bad_pruning_configs_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        checked("hparams_search=lr", *overrides)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_minimized_search_prunes_on_a_loss() -> None:
    assert checked("hparams_search=rounds_to_target").callbacks["pruning"].metric == "eval/loss"
    with pytest.raises(ConfigError, match="rises as a run improves, and objective=rounds_to"):
        checked("hparams_search=rounds_to_target", "callbacks.pruning.metric=eval/accuracy")


def test_an_unknown_pruner_stops_a_search_before_its_first_job(tmp_path: Path) -> None:
    result = run_cli(
        "-m", "hparams_search=lr", "callbacks.pruning.pruner=medain", "model=2nn", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "fedlab: error: callbacks.pruning.pruner='medain' is unknown; allowed: none, median, "
        "percentile, successive_halving, threshold"
    )
    assert "Launching" not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_search_prunes_its_bad_trials_end_to_end(tmp_path: Path) -> None:
    """Through the real CLI and Optuna sweeper: four client learning rates, one that learns
    and three that do not, in an order fixed by the sampler's seed (28: the one that learns
    first, then the others, each once); after it has finished, each of the others is worse than
    the median at round 1, stops there, ends PRUNED, and the search goes on to its end."""
    result = run_cli(
        "-m", "hparams_search=lr", "model=2nn", "client_optimizer=sgd", "server_optimizer=sgd",
        "C=0.05", "B=50", "rounds=3", "tracking.log_model=false",
        "client_optimizer.lr=choice(0.1, 0.000001, 0.000002, 0.000003)", "server_optimizer.lr=1.0",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=28",
        "+callbacks.pruning.pruner_args.n_startup_trials=1",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(
        study_name="fedlab-lr-iid-2nn-sgd-sgd", storage=f"sqlite:///{tmp_path / 'optuna.db'}"
    )
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"], states
    assert study.trials[0].params["client_optimizer.lr"] == 0.1
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedlab").experiment_id
    runs = {r.data.tags.get(sweep.TRIAL_TAG): r for r in client.search_runs([experiment])}
    parent = runs.pop(None)
    for trial in study.trials:
        job = runs[str(trial.number)]
        assert job.info.status == "FINISHED"
        pruned = trial.state == optuna.trial.TrialState.PRUNED
        assert (job.data.tags.get(PRUNED_TAG) == "true") == pruned
        rounds = max(m.step for m in client.get_metric_history(job.info.run_id, "train/loss"))
        assert rounds == (max(trial.intermediate_values) if pruned else 3)
    tags = parent.data.tags
    assert tags["fedlab.pruner"] == "median(n_startup_trials=1)"
    assert tags["fedlab.trials_pruned"] == str(states.count("PRUNED"))
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/optuna_history.png", "report/optuna_intermediate_values.png"} <= report
    assert "deprecated" not in result.stderr


def test_the_searchs_parent_run_gets_optunas_figures(tmp_path: Path, capsys) -> None:
    from omegaconf import OmegaConf
    from PIL import Image

    storage, name = _study(tmp_path, finished=0)
    study = optuna.load_study(study_name=name, storage=storage)
    COMPLETE = optuna.trial.TrialState.COMPLETE  # noqa: N806
    lr = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
    for i, (rate, curve) in enumerate(
        [(0.1, [0.8, 0.9, 0.95]), (0.01, [0.6, 0.8, 0.9]), (1e-3, [0.2]), (0.05, [0.7, 0.85, 0.9])]
    ):
        study.add_trial(
            optuna.trial.create_trial(
                params={"client_optimizer.lr": rate, "E": i % 2 + 1},
                distributions={"client_optimizer.lr": lr,
                               "E": optuna.distributions.IntDistribution(1, 2)},
                value=curve[-1],
                intermediate_values=dict(enumerate(curve, start=1)),
                state=optuna.trial.TrialState.PRUNED if len(curve) == 1 else COMPLETE,
            )
        )  # fmt: skip
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "fedlab")
    tracker.open_parent("sweep s", "s", {sweep.ROLE_TAG: "sweep", sweep.SWEEP_TAG: "s"})
    sweeper = OmegaConf.create({"study_name": name, "storage": storage})
    sweep._study_figures(tracker, sweeper, tmp_path / "report", "eval/accuracy")

    names = ("optuna_history.png", "optuna_intermediate_values.png", "optuna_importances.png")
    for figure in names:
        with Image.open(tmp_path / "report" / figure) as image:
            assert image.format == "PNG" and image.width >= 600
    logged = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "report")}
    assert logged == {f"report/{n}" for n in names}
    tags = tracker.client.get_run(tracker.run_id).data.tags
    assert (tags["fedlab.trials"], tags["fedlab.trials_pruned"]) == ("4", "1")

    # A study with one finished trial has no importances: said in a line, the rest drawn.
    storage, name = f"sqlite:///{tmp_path / 'one.db'}", "one"
    one = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    one.add_trial(optuna.trial.create_trial(params={"x": 0.5}, value=0.5, distributions={
        "x": optuna.distributions.FloatDistribution(0, 1)}))  # fmt: skip
    sweep._study_figures(tracker, OmegaConf.create({"study_name": name, "storage": storage}),
                         tmp_path / "one", None)  # fmt: skip
    assert (tmp_path / "one" / "optuna_history.png").exists()
    err = capsys.readouterr().err
    assert "optuna_importances.png" in err, err


def test_the_sweep_driver_checks_the_pruning_config_once(compose_cfg, capsys) -> None:
    search = sweep.check_pruning(compose_cfg("hparams_search=lr", hydra=True))
    assert (search.pruner, search.metric) == ("median", "eval/accuracy")
    assert capsys.readouterr().err == ""
    # A grid has no trials to prune: said once, before its jobs run to the end.
    grid = compose_cfg("+callbacks.pruning.pruner=median", hydra=True)
    assert sweep.check_pruning(grid).pruner == "median"
    assert "prunes the trials of an Optuna search" in capsys.readouterr().err
    assert sweep.check_pruning(compose_cfg(hydra=True)) is None  # no pruning asked for
    with pytest.raises(ConfigError, match="is minimized: the pruner would stop the best"):
        sweep.check_pruning(
            compose_cfg(
                "hparams_search=rounds_to_target", "callbacks.pruning.metric=eval/accuracy",
                hydra=True,
            )
        )  # fmt: skip
