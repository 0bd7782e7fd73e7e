"""Shared fixtures: the real config composed by Hydra, and the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

import fedlab
from fedlab.config import RunConfig, register_configs
from fedlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"  # the package fedlab.conf (pyproject.toml maps it), as the CLI reads it

register_configs()

# What one pytest-xdist worker may hold at once: its own TensorFlow (pytest's process was seen at
# 1.7 GB resident in a fast-suite run) and a fedlab CLI it started (1.3 GB). See docs/testing.md.
WORKER_MEMORY = 3 * 2**30


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (pyproject.toml's addopts): one worker per core this process may run on, no
    more than the machine's memory holds. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides where
    it is set (pytest-xdist reads it when this returns None)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cores, memory // WORKER_MEMORY))


# Small, quick settings for runs through the real CLI: the 2NN, 5 clients a round, plain FedAvg,
# on TFF's engine, whose worker process the leak and signal tests watch (engine=fast, the
# default, is checked against it in tests/test_fast.py and runs every preset).
QUICK = [
    "engine=tff",
    "model=2nn",
    "client_optimizer=sgd",
    "server_optimizer=sgd",
    "num_clients=100",
    "C=0.05",
    "E=1",
    "B=50",
]


def checked(*overrides: str) -> RunConfig:
    """The checked config of these overrides, as the Python API (``fedlab.compose``) and the
    command line make it; bad input raises ``ConfigError`` with one line."""
    return fedlab.compose(list(overrides))


def assert_refused(overrides: Sequence[str], words: Sequence[str]) -> str:
    """Composing ``overrides`` is refused in one line (a ``ConfigError``) that says each of
    ``words``; returns the line."""
    with pytest.raises(ConfigError) as info:
        checked(*overrides)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


def checkpoint_arrays(cwd: Path) -> dict[str, list[np.ndarray]]:
    """The run's checkpoint (server state) and every client's state file beside it, by file
    name; the run's own file as ``run.npz`` (its name carries the tracking store, which
    differs between two runs made in two directories)."""
    (path,) = (cwd / "checkpoints").glob("run-*.npz")
    found = {}
    for file in [path, *sorted(path.with_name(path.stem + ".clients").glob("*.npz"))]:
        with np.load(file) as npz:
            name = "run.npz" if file == path else file.name
            found[name] = [npz[k] for k in sorted(npz.files) if k != "meta"]
    return found


def assert_extending_equals_straight(
    tmp_path: Path, *overrides: str
) -> tuple[dict[tuple[str, int], float], dict[str, list[np.ndarray]]]:
    """A run of 4 rounds, and the same run made for 2 rounds then extended to 4 from its
    checkpoint, log the same metrics bit for bit (time/* aside) and leave the same checkpoint,
    client state included, array for array. Returns the straight run's metrics and files."""
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    straight, extended = RecordingTracker(), RecordingTracker()
    for rounds, out, tracker in ((4, "a", straight), (2, "b", extended), (4, "b", extended)):
        cfg = checked(*overrides, f"rounds={rounds}")
        run(cfg, output_dir=tmp_path / out, tracker=tracker, progress=False)

    def numbers(tracker):
        return {k: v for k, v in tracker.metrics.items() if not k[0].startswith("time/")}

    assert numbers(extended) == numbers(straight)  # bit-identical, every round
    a, b = checkpoint_arrays(tmp_path / "a"), checkpoint_arrays(tmp_path / "b")
    assert sorted(a) == sorted(b)  # the same clients, at the same rounds
    for name in a:
        for x, y in zip(a[name], b[name], strict=True):
            np.testing.assert_array_equal(x, y)
    return numbers(straight), a


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """Compose conf/config.yaml with overrides, as the CLI does (``pkg://fedlab.conf``)."""

    def _compose(*overrides: str, hydra: bool = False) -> DictConfig:
        with initialize_config_module("fedlab.conf", version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=hydra)

    return _compose


def runtime_error(stderr: str) -> str:
    """The one-line error of a run that failed once it had started: the last line of stderr,
    after only the lines the run logged of what it was doing (``fedlab.logs``: a time, then the
    step), never a traceback."""
    import re

    *said, last = stderr.strip().splitlines()
    assert last.startswith("fedlab: error: "), stderr[-3000:]
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in said), stderr[-3000:]
    return last


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, timeout: float = 600, module: str = "fedlab", **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m fedlab ARGS`` (or another ``module``) in ``cwd``, where its mlflow.db and
    outputs/ land."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worker_pids(cwd: Path | None = None) -> set[int]:
    """PIDs of running TFF worker_binary processes; with ``cwd``, only those working there
    (a run's worker inherits the run's directory), so that tests running at the same time
    elsewhere on the machine do not count."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if not cmdline.endswith(b"worker_binary"):
            continue
        try:
            if cwd is not None and Path(os.readlink(proc / "cwd")) != cwd.resolve():
                continue
        except OSError:
            continue
        pids.add(int(proc.name))
    return pids


def processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process, from /proc."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        found.append((int(proc.name), state, int(ppid), int(pgrp)))
    return found


def children(pid: int) -> set[int]:
    """Direct children of ``pid``."""
    return {child for child, _, ppid, _ in processes() if ppid == pid}


def run_so_far(cwd: Path):
    """``cwd``'s one MLflow run as a process writing it has logged it so far, or None.

    None until the run exists. The store is looked at read-only with sqlite3 first: an
    MlflowClient opened on a store that the starting process is still creating would run
    MLflow's migrations alongside it, and one of the two fails ("table _alembic_tmp_... already
    exists"; CI at 22a24f1). fedlab's own processes take turns through the store's lock file
    (``fedlab.tracking.mlflow._store_lock``); a read-only look needs no turn. A run is created
    only after its process has finished the store, so once a run row is there the client finds
    the schema complete and migrates nothing.
    """
    store = cwd / "mlflow.db"
    if not store.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            has_run = db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None
    except sqlite3.Error:  # no runs table yet, or the other process holds a write lock
        return None
    if not has_run:
        return None
    try:
        client = MlflowClient(tracking_uri=f"sqlite:///{store}")
        experiment = client.get_experiment_by_name("fedlab")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
    except Exception:  # noqa: BLE001 - a write of the other process holds the database
        return None
    return runs[0] if runs else None


def only_run(cwd: Path):
    """The one MLflow run in ``cwd``'s default store (and its client)."""
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _like_a_terminal() -> None:
    # A shell's background job (as CI may run us) inherits SIGINT ignored, and Python keeps it
    # ignored; a terminal's foreground process has the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """fedlab in a process group of its own, as a terminal runs a foreground command."""
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags go before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    return subprocess.Popen(
        [sys.executable, "-m", "fedlab", *flags, *QUICK, *overrides],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_like_a_terminal,
    )


def wait_for_round(
    proc: subprocess.Popen[str], cwd: Path, at_least: int = 1, timeout: float = 300
) -> set[int]:
    """Wait until round ``at_least`` is in MLflow; return the run's TFF worker PIDs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        workers = children(proc.pid) & worker_pids()
        run = run_so_far(cwd) if workers else None
        if run is not None:
            client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
            if steps and max(steps) >= at_least:
                return workers
        time.sleep(0.5)
    raise AssertionError("the run did not finish a round in time")
