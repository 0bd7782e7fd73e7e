"""End to end through the real CLI: a short run lands in a real MLflow store (SQLite) with the
documented metric names, test accuracy rises above chance, and no TFF worker outlives it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fedlab.experiment import run
from fedlab.tracking import Tracker
from tests.conftest import (
    QUICK,
    checked,
    children,
    only_run,
    run_cli,
    run_so_far,
    start_cli,
    wait_for_round,
    worker_pids,
)

METRICS = [
    "train/loss",
    "train/accuracy",
    "eval/loss",
    "eval/accuracy",
    "comm/uploaded_mb",
    "comm/total_mb",
]


def test_short_run_is_tracked_in_mlflow(tmp_path: Path) -> None:
    result = run_cli(*QUICK, "rounds=3", "target_accuracy=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not worker_pids(cwd=tmp_path)  # TFF's worker ended with the run

    client, run = only_run(tmp_path)
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
    assert {"config.yaml", "metrics.png", "model.keras", "__main__.log"} <= artifacts
    assert "final test accuracy" in result.stdout and run.info.run_id in result.stdout
    assert result.stdout.strip().count("\n") == 0  # stdout: the summary alone

    # What the run said (fedlab/logs.py): all of it in Hydra's job log, named on the run ...
    (log_file,) = tmp_path.glob("outputs/*/*/__main__.log")
    assert tags["fedlab.log_file"] == str(log_file.resolve())
    text = log_file.read_text()
    for line in (
        "FedAvg on mnist, model 2nn, partition iid over K=100 clients, C=0.05 (5 a round)",
        "importing TensorFlow: done in",
        "loading mnist and partitioning it (iid): done in",
        "data: mnist: 60,000 training examples over 100 clients, 10,000 test examples; source: ",
        "engine=tff ready in",
        "evaluating the initial model ...",
        "round 0: test accuracy",
        "round 1: test accuracy",
        "round 3: test accuracy",
        f"tracking: MLflow run {run.info.run_id}",
        "After 3 rounds: final test accuracy",
    ):
        assert line in text, (line, text)
    # ... and, without a terminal, on stderr the same less each evaluation and the summary,
    # with progress lines instead of a bar.
    assert "round 0: test accuracy" in result.stderr  # the first evaluation takes a while
    assert "round 2: test accuracy" not in result.stderr
    assert "round 1/3: train loss" in result.stderr and "round 3/3: train loss" in result.stderr
    assert "After 3 rounds" not in result.stderr and "%|" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_stops_the_run_killed_and_its_worker(tmp_path: Path, sig: int) -> None:
    proc = start_cli(tmp_path, "rounds=500", "tracking.log_model=false")
    workers = wait_for_round(proc, tmp_path)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the whole foreground group
    else:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr[-3000:]
    assert not (workers & worker_pids())
    _, run = only_run(tmp_path)
    assert run.info.status == "KILLED"
    assert "train/loss" in run.data.metrics  # what it logged stays


@pytest.mark.slow
def test_sigkill_of_fedlab_takes_the_worker_with_it(tmp_path: Path) -> None:
    proc = start_cli(tmp_path, "rounds=500", "tracking=none")
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
    result = run_cli(*QUICK, "rounds=5", "client_optimizer.lr=1e30", cwd=tmp_path)
    assert result.returncode == 2
    assert "diverged" in result.stderr and "Traceback" not in result.stderr
    # The run's log lines, then the error in one line, and nothing after it.
    assert result.stderr.strip().splitlines()[-1].startswith("fedlab: error: training diverged")
    assert result.stderr.count("diverged") == 1
    assert not worker_pids(cwd=tmp_path)
    _, run = only_run(tmp_path)
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
    def run_once(seed: int, name: str) -> dict[tuple[str, int], float]:
        cfg = checked(*QUICK, "rounds=2", "tracking=none", f"seed={seed}")
        tracker = RecordingTracker()
        # A fresh output (and so checkpoint) directory each time: no run resumes another.
        run(cfg, output_dir=tmp_path / name, tracker=tracker, progress=False)
        return {k: v for k, v in tracker.metrics.items() if not k[0].startswith("time/")}

    first, again, other = run_once(0, "first"), run_once(0, "again"), run_once(1, "other")
    assert first == again  # bit-identical metrics, every round
    assert first[("eval/accuracy", 2)] != other[("eval/accuracy", 2)]


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "no terminal"])
def test_a_large_E_says_so_before_its_first_round(tmp_path: Path, terminal: bool) -> None:
    """E=2000 with the 2NN fits (10 clients x 2000 epochs x 600 examples a round) and takes
    minutes a round: before the first round's work, a terminal shows the progress bar, and a
    log without one (nohup, SLURM) the line that the rounds start."""
    import fcntl
    import pty
    import selectors
    import struct
    import subprocess
    import sys
    import termios

    from tests.conftest import cli_env

    if terminal:
        reader, writer = pty.openpty()  # stderr is a terminal: the bar is drawn there
        # 24 rows of 120 columns, as a terminal window has (a new pty has 0 columns).
        fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    else:
        reader, writer = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedlab", "E=2000", "model=2nn", "rounds=1", "tracking=none"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=writer,
        start_new_session=True,
    )
    os.close(writer)
    want = b"0/1 [" if terminal else b"training rounds 1 to 1 (10 clients a round) ..."
    seen = b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(reader, selectors.EVENT_READ)
            deadline = time.monotonic() + 120
            while want not in seen and time.monotonic() < deadline and proc.poll() is None:
                if selector.select(timeout=1):
                    try:
                        seen += os.read(reader, 65536)
                    except OSError:  # the terminal closed: the process ended
                        break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        os.close(reader)
    assert want in seen, seen[-2000:]
    if terminal:
        assert b"FedAdam iid:   0%" in seen, seen[-2000:]
    else:
        assert b"round 0: test accuracy" in seen and b"%|" not in seen, seen[-2000:]


@pytest.mark.slow
def test_sigterm_ends_a_fast_run_at_once_even_mid_round(tmp_path: Path) -> None:
    # One client a round with a long local training: its thread is mid-round when the signal
    # comes, and Python would wait for it at exit.
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env

    proc = subprocess.Popen(
        [sys.executable, "-m", "fedlab", "model=2nn", "C=0.0", "E=3000", "rounds=2",
         "client_optimizer=sgd", "server_optimizer=sgd", "tracking.log_model=false"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Round 1 starts right after round 0's evaluation is in MLflow (the store exists by then).
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        run = run_so_far(tmp_path)
        if run is not None and "eval/accuracy" in run.data.metrics:
            break
        time.sleep(0.5)
    time.sleep(5)  # into the first round's local training (minutes long)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert time.monotonic() - sent < 15, "the process waited for the client's round to end"
    _, run = only_run(tmp_path)
    assert run.info.status == "KILLED"
