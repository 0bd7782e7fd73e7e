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


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    result = run_cli(
        "-m",
        *QUICK,
        "rounds=1",
        "tracking.log_model=false",
        "client_optimizer.lr=1e30,0.1",
        cwd=tmp_path,
    )
    assert result.returncode == 2  # the sweep reports that a job failed ...
    assert "diverged" in result.stderr
    with sqlite3.connect(tmp_path / "mlflow.db") as conn:
        statuses = dict(conn.execute("select name, status from runs"))
    # ... after every job ran: the diverged one FAILED, the next one FINISHED.
    assert sorted(statuses.values()) == ["FAILED", "FINISHED"]
    (failed,) = [name for name, status in statuses.items() if status == "FAILED"]
    assert "client_optimizer.lr=1e+30" in failed
