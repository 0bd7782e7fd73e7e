"""Runs that survive: killed at an arbitrary round and re-run with the same command, a run ends
with the same global weights and the same metrics as one that was never interrupted, in one
continuous MLflow run (McMahan et al.'s 1000 rounds take hours; a sweep takes days)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import QUICK, only_run, run_cli, start_cli, wait_for_round

ARGS = [*QUICK, "rounds=5", "tracking.log_model=false"]


def _series(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric's (step, value) pairs, wall-time metrics left out."""
    run = client.get_run(run_id)
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in run.data.metrics
        if not key.startswith("time/")
    }


def _final_state(cwd: Path) -> list[np.ndarray]:
    (path,) = (cwd / "checkpoints").glob("run-*.npz")
    with np.load(path) as npz:
        return [npz[k] for k in sorted(npz.files) if k.startswith("state_")]


@pytest.mark.slow
def test_sigkill_then_same_command_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir()
    resumed.mkdir()
    assert run_cli(*ARGS, cwd=straight).returncode == 0

    proc = start_cli(resumed, *ARGS)
    wait_for_round(proc, resumed, at_least=2)
    proc.kill()  # SIGKILL: no handler runs, no goodbye checkpoint
    proc.communicate(timeout=60)
    _, killed = only_run(resumed)
    assert killed.info.status == "RUNNING"  # as a killed process leaves it

    again = run_cli(*ARGS, cwd=resumed)
    assert again.returncode == 0, again.stderr[-3000:]

    client, run = only_run(resumed)  # the same run, continued
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["fedlab.resumed"] == "true"
    got = _series(client, run.info.run_id)
    for key, points in got.items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), f"{key} has a step twice: {steps}"
    ref_client, ref_run = only_run(straight)
    assert got == _series(ref_client, ref_run.info.run_id)  # bit-identical metrics
    for a, b in zip(_final_state(resumed), _final_state(straight), strict=True):
        assert np.array_equal(a, b)  # bit-identical server state

    # Once finished, the same command has nothing left to do and starts no new run.
    done = run_cli(*ARGS, cwd=resumed)
    assert done.returncode == 0 and "nothing left to run" in done.stderr  # a log line
    assert only_run(resumed)[1].info.run_id == run.info.run_id
    assert run.info.run_id in done.stdout  # the summary says where the run is
    # Asking for more rounds extends the same run.
    more = run_cli(*[a for a in ARGS if a != "rounds=5"], "rounds=6", cwd=resumed)
    assert more.returncode == 0, more.stderr[-3000:]
    client, extended = only_run(resumed)
    assert extended.info.run_id == run.info.run_id and extended.info.status == "FINISHED"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == 6


@pytest.mark.slow
def test_sigterm_keeps_a_checkpoint_of_the_last_finished_round(tmp_path: Path) -> None:
    proc = start_cli(
        tmp_path, *[a for a in ARGS if a != "rounds=5"], "rounds=500", "checkpoint_every=1000"
    )
    wait_for_round(proc, tmp_path, at_least=2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    client, run = only_run(tmp_path)
    assert run.info.status == "KILLED"
    last_logged = max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    (path,) = (tmp_path / "checkpoints").glob("run-*.npz")
    with np.load(path) as npz:
        meta = npz["meta"]
    saved = json.loads(str(meta))
    assert saved["round"] == last_logged >= 2
    assert saved["run_id"] == run.info.run_id


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    assert run_cli(*ARGS, "rounds=1", "tracking=none", cwd=tmp_path).returncode == 0
    (path,) = (tmp_path / "checkpoints").glob("run-*.npz")
    path.write_bytes(path.read_bytes()[:100])
    result = run_cli(*ARGS, "rounds=2", "tracking=none", cwd=tmp_path)
    assert result.returncode == 2
    # The lines the run logged of what it was doing (fedlab/logs.py), then the error in one.
    *said, last = result.stderr.strip().splitlines()
    assert last.startswith("fedlab: error: checkpoint") and "corrupt" in last
    assert "Traceback" not in result.stderr and not any("error" in line for line in said)
    fresh = run_cli(*ARGS, "rounds=2", "tracking=none", "resume=false", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
