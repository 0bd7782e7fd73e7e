"""Many runs at once: parallel jobs share one SQLite store without losing a metric, and a job
that fails in a multirun leaves the others to finish."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import QUICK, cli_env, run_cli


@pytest.mark.slow
def test_parallel_jobs_share_a_new_sqlite_store(tmp_path: Path) -> None:
    # Three runs that all find no mlflow.db: MLflow's migrations and the experiment's creation
    # would race (and crash) without fedlab's lock.
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedlab",
                *QUICK,
                "model=logreg",
                "rounds=10",
                f"seed={seed}",
                "checkpoint_every=0",
                "tracking.log_model=false",
            ],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "database is locked" not in err
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        for key in ("train/loss", "eval/accuracy", "comm/total_mb"):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            expected = list(range(0 if key.startswith("eval") else 1, 11))
            assert steps == expected, (key, steps)


def _statuses(db: Path) -> list[tuple[str, str]]:
    """(run name, status) of every job's MLflow run in the store (not the sweep's parent)."""
    with sqlite3.connect(db) as conn:
        return list(
            conn.execute(
                "select name, status from runs where run_uuid not in (select run_uuid from tags"
                " where key = 'fedlab.role' and value = 'sweep')"
            )
        )


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    sweep = ["client_optimizer.lr=1e30,0.1", "partition=iid,shards"]
    result = run_cli("-m", *QUICK, "rounds=1", "tracking.log_model=false", *sweep, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("fedlab: error: training diverged") == 2
    statuses = _statuses(tmp_path / "mlflow.db")
    # Every job ran: the diverged ones FAILED (with the reason), the others FINISHED.
    assert sorted(s for _, s in statuses) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    for name, status in statuses:
        assert (status == "FAILED") == ("client_optimizer.lr=1e+30" in name), name


@pytest.mark.slow
def test_a_diverging_trial_fails_and_the_optuna_study_goes_on(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = [
        "hydra/sweeper=optuna",
        # Not the grid sampler: with the plugin on optuna 5 it crashes when its last trial fails.
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=1",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.direction=maximize",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=diverge",
        "hydra.sweeper.max_failure_rate=1.0",  # the plugin's default 0 stops at a failed trial
        "client_optimizer.lr=choice(1e30, 0.1)",
    ]
    result = run_cli("-m", *QUICK, "rounds=1", "tracking.log_model=false", *search, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="diverge", storage=storage)
    # Every trial ran; each diverged one is FAIL (its MLflow run FAILED), the rest COMPLETE.
    assert len(study.trials) == 4
    states = {t.number: t.state.name for t in study.trials}
    lrs = {t.number: t.params["client_optimizer.lr"] for t in study.trials}
    assert {"FAIL", "COMPLETE"} <= set(states.values())
    assert all((states[n] == "FAIL") == (lrs[n] == 1e30) for n in states), (states, lrs)
    first_fail = min(n for n, s in states.items() if s == "FAIL")
    assert first_fail < 3  # the study went on past a failed trial
    # A trial that repeats a finished config is answered from its checkpoint, with no new run.
    runs = _statuses(tmp_path / "mlflow.db")
    assert {s for _, s in runs} == {"FAILED", "FINISHED"}
    assert all((s == "FAILED") == ("1e+30" in name) for name, s in runs), runs
