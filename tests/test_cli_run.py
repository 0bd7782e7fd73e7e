"""End to end through the real CLI: a short run lands in a real MLflow store (SQLite) with the
documented metric names, test accuracy rises above chance, and no TFF worker outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from fedlab.experiment import run
from fedlab.tracking import Tracker
from tests.conftest import QUICK, children, cli_env, run_cli, worker_pids

METRICS = [
    "train/loss",
    "train/accuracy",
    "eval/loss",
    "eval/accuracy",
    "comm/uploaded_mb",
    "comm/total_mb",
]


def _only_run(cwd: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_short_run_is_tracked_in_mlflow(tmp_path: Path) -> None:
    before = worker_pids()
    result = run_cli(*QUICK, "rounds=3", "target_accuracy=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert worker_pids() <= before

    client, run = _only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == ",".join([*QUICK, "rounds=3", "target_accuracy=0.5"])
    # Every config value is a param, under its dotted key.
    params = run.data.params
    assert params["model.name"] == "2nn" and params["C"] == "0.05" and params["rounds"] == "3"
    assert params["client_optimizer.name"] == "sgd" and params["partition.name"] == "iid"
    assert params["B"] == "50" and params["num_clients"] == "100"
    tags = run.data.tags
    assert tags["partition"] == "iid" and tags["model"] == "2nn"
    assert tags["algorithm"] == "FedAvg"
    assert len(tags["git_commit"]) in (40, len("unknown"))
    assert "rounds=3" in tags["overrides"]

    for name in METRICS:
        history = client.get_metric_history(run.info.run_id, name)
        steps = sorted(m.step for m in history)
        assert steps[-3:] == [1, 2, 3], (name, steps)
    # 5 clients a round, a float32 2NN each way: 5 * 199,210 * 4 bytes up.
    uploaded = client.get_metric_history(run.info.run_id, "comm/uploaded_mb")
    assert uploaded[0].value == pytest.approx(5 * 199_210 * 4 / 1e6)
    total = sorted(
        client.get_metric_history(run.info.run_id, "comm/total_mb"), key=lambda m: m.step
    )
    assert total[-1].value == pytest.approx(3 * 2 * 5 * 199_210 * 4 / 1e6)

    accuracy = {
        m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/accuracy")
    }
    assert set(accuracy) == {0, 1, 2, 3}
    assert accuracy[3] > 0.5  # chance is 0.1 (10 classes)
    rounds_to_target = client.get_metric_history(run.info.run_id, "rounds_to_target")
    reached = min(r for r in (1, 2, 3) if accuracy[r] >= 0.5)
    assert [m.value for m in rounds_to_target] == [reached]

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "test_accuracy.png", "model.keras"} <= artifacts
    assert "final test accuracy" in result.stdout and run.info.run_id in result.stdout


def _like_a_terminal() -> None:
    # A shell's background job (as CI may run us) inherits SIGINT ignored, and Python keeps it
    # ignored; a terminal's foreground process has the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """fedlab in a process group of its own, as a terminal runs a foreground command."""
    return subprocess.Popen(
        [sys.executable, "-m", "fedlab", *QUICK, *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_like_a_terminal,
    )


def _wait_for_rounds(proc: subprocess.Popen[str], cwd: Path, timeout: float = 300) -> set[int]:
    """Wait until the run has finished a round (its metrics are in MLflow); return its worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        workers = children(proc.pid) & worker_pids()
        if workers and (cwd / "mlflow.db").exists():
            client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
            experiment = client.get_experiment_by_name("fedlab")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and client.get_metric_history(runs[0].info.run_id, "train/loss"):
                return workers
        time.sleep(0.5)
    raise AssertionError("the run did not finish a round in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_stops_the_run_killed_and_its_worker(tmp_path: Path, sig: int) -> None:
    proc = _start(tmp_path, "rounds=500", "tracking.log_model=false")
    workers = _wait_for_rounds(proc, tmp_path)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the whole foreground group
    else:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr[-3000:]
    assert not (workers & worker_pids())
    _, run = _only_run(tmp_path)
    assert run.info.status == "KILLED"
    assert "train/loss" in run.data.metrics  # what it logged stays


@pytest.mark.slow
def test_sigkill_of_fedlab_takes_the_worker_with_it(tmp_path: Path) -> None:
    proc = _start(tmp_path, "rounds=500", "tracking=none")
    deadline = time.monotonic() + 300
    while not (workers := children(proc.pid) & worker_pids()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while workers & worker_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (workers & worker_pids())


@pytest.mark.slow
def test_divergence_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    before = worker_pids()
    result = run_cli(*QUICK, "rounds=5", "client_optimizer.lr=1e30", cwd=tmp_path)
    assert result.returncode == 2
    assert "diverged" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert worker_pids() <= before
    _, run = _only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags["fedlab.failure"]
    assert "eval/accuracy" in run.data.metrics  # what it had logged (round 0) stays


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["partition=shards", "client_sampling=cyclic", "tracking=none"],
        ["partition=dirichlet", "partition.alpha=0.3", "B=null", "tracking=none"],
        ["partition=shards", "partition.assignment=fixed", "model=logreg", "tracking=none"],
    ],
    ids=["shards-cyclic", "dirichlet-fullbatch", "shards-fixed-logreg"],
)
def test_other_partitions_run(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(*QUICK, "rounds=2", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final test accuracy" in result.stdout


class RecordingTracker(Tracker):
    """A real tracker that keeps what it is given in memory (as ``tracking=none`` but readable)."""

    def __init__(self) -> None:
        self.metrics: dict[tuple[str, int], float] = {}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.update({(key, step): value for key, value in metrics.items()})


@pytest.mark.slow
def test_same_seed_same_run_other_seed_other_run(tmp_path: Path, compose_cfg) -> None:
    def run_once(seed: int) -> dict[tuple[str, int], float]:
        cfg = OmegaConf.to_object(compose_cfg(*QUICK, "rounds=2", "tracking=none", f"seed={seed}"))
        tracker = RecordingTracker()
        run(cfg, output_dir=tmp_path / str(seed), tracker=tracker, progress=False)
        return {k: v for k, v in tracker.metrics.items() if not k[0].startswith("time/")}

    first, again, other = run_once(0), run_once(0), run_once(1)
    assert first == again  # bit-identical metrics, every round
    assert first[("eval/accuracy", 2)] != other[("eval/accuracy", 2)]
