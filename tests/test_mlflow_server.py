"""A sweep tracked by a real MLflow tracking server, checked through MLflow's REST API and in the
real MLflow UI (headless Chromium).

One ``mlflow server`` (SQLite backend, artifacts in a temporary folder, one worker, no job
processes: see ``../shared/ENVIRONMENT.md``) and one tiny 2×2 sweep through the real CLI serve
both tests of this module. The server runs in a session of its own and is stopped with its whole
process group; so is every Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import QUICK, run_cli, worker_pids
from tests.servers import (
    Server,
    free_port,
    get,
    post,
    refusing_proxy,
    start_mlflow_server,
    stop_group,
    tags,
)

# One worker runs the whole module: its server and sweep are module fixtures.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow-server")]

ROUNDS = 2
PARTITIONS = ("iid", "shards")
EPOCHS = (1, 2)
# The job names fedlab gives a sweep's runs: its swept overrides, in command-line order.
JOB_NAMES = {f"partition={p},E={e}" for p in PARTITIONS for e in EPOCHS}

CHROMIUM_TIMEOUT = 120  # s per page load


# --- the MLflow server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``mlflow server`` on 127.0.0.1 at a free port, SQLite backend, artifacts in tmp."""
    root = tmp_path_factory.mktemp("mlflow_server")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--workers",
        "1",
    ]
    # No job processes (ENVIRONMENT.md).
    server = start_mlflow_server(
        command, cwd=root, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    )
    try:
        yield server
    finally:
        stop_group(server.proc)


# --- the sweep -------------------------------------------------------------------------------


@dataclass
class Sweep:
    experiment_id: str
    parent: dict  # the parent run, as runs/search returns it
    jobs: list[dict]  # its children
    cwd: Path
    output: str  # the sweep's stdout and stderr


@pytest.fixture(scope="module")
def sweep(mlflow_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """A 2×2 grid (partition × E) through the real CLI, tracked by the server."""
    cwd = tmp_path_factory.mktemp("sweep")
    quick = [o for o in QUICK if not o.startswith("E=")]
    result = run_cli(
        "-m",
        *quick,
        f"rounds={ROUNDS}",
        "tracking.log_model=false",
        f"tracking.uri={mlflow_server.url}",
        f"partition={','.join(PARTITIONS)}",
        f"E={','.join(map(str, EPOCHS))}",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not worker_pids(cwd), "the sweep left TFF workers running"
    assert not (cwd / "mlflow.db").exists(), "the sweep tracked into a local store"
    experiment = get(
        mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="fedlab"
    )
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = post(
        mlflow_server,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment_id], "max_results": 1000},
    )["runs"]
    parents = [r for r in runs if tags(r).get("fedlab.role") == "sweep"]
    assert len(parents) == 1, [r["info"]["run_name"] for r in runs]
    parent = parents[0]
    jobs = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    assert len(runs) == 1 + len(jobs), [r["info"]["run_name"] for r in runs]
    return Sweep(experiment_id, parent, jobs, cwd, result.stdout + result.stderr)


def test_a_sweep_is_tracked_by_the_server_as_a_parent_run_with_nested_jobs(
    mlflow_server: Server, sweep: Sweep
) -> None:
    parent_tags = tags(sweep.parent)
    assert sweep.parent["info"]["status"] == "FINISHED"
    assert parent_tags["fedlab.swept_keys"] == "partition,E"
    assert parent_tags["fedlab.jobs"] == "4" and parent_tags["fedlab.jobs_failed"] == "0"

    assert len(sweep.jobs) == 4
    assert {r["info"]["status"] for r in sweep.jobs} == {"FINISHED"}
    assert {r["info"]["run_name"] for r in sweep.jobs} == JOB_NAMES
    assert sorted(int(tags(r)["fedlab.job_num"]) for r in sweep.jobs) == [0, 1, 2, 3]
    for run in sweep.jobs:
        job_tags = tags(run)
        assert job_tags["fedlab.role"] == "job"
        assert job_tags["fedlab.sweep_id"] == parent_tags["fedlab.sweep_id"]
        run_id = run["info"]["run_id"]
        history = get(
            mlflow_server,
            "/api/2.0/mlflow/metrics/get-history",
            run_id=run_id,
            metric_key="eval/accuracy",
            max_results="1000",
        )["metrics"]
        steps = sorted(m["step"] for m in history)
        assert steps == list(range(ROUNDS + 1)), (run["info"]["run_name"], steps)
        assert all(0.0 <= m["value"] <= 1.0 for m in history)
        latest = {m["key"]: m for m in run["data"]["metrics"]}
        for key in ("eval/accuracy", "train/loss", "comm/total_mb"):
            assert key in latest, (run["info"]["run_name"], sorted(latest))
        assert latest["train/loss"]["step"] == ROUNDS


MLFLOW_URL_LINES = ("View run", "View experiment")  # what MLflow prints when a run ends


def test_a_run_tracked_by_the_server_prints_only_its_progress_and_summary(
    mlflow_server: Server, tmp_path: Path
) -> None:
    """MLflow prints "🏃 View run ... at" and "🧪 View experiment at" lines when a run on a
    server ends; fedlab's output is its log lines (or progress bar), summary and errors."""
    quick = [o for o in QUICK if not o.startswith("engine=")]
    result = run_cli(
        *quick,
        "rounds=2",
        "tracking.log_model=false",
        f"tracking.uri={mlflow_server.url}",
        "tracking.experiment=output",  # the sweep's tests expect experiment 'fedlab' to be theirs
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [result.stdout.strip()], result.stdout
    assert result.stdout.startswith("After 2 rounds: final test accuracy "), result.stdout
    assert f"in experiment 'output' at {mlflow_server.url}." in result.stdout
    # Without a terminal, stderr is fedlab's log lines (fedlab/logs.py), each with its time.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("round 2/2: train loss" in line for line in lines), lines
    logged = re.compile(r"^\d\d:\d\d:\d\d ")
    assert all(logged.match(line) for line in lines), [x for x in lines if not logged.match(x)]


def test_a_sweep_tracked_by_the_server_prints_no_mlflow_lines(sweep: Sweep) -> None:
    for words in MLFLOW_URL_LINES:
        assert words not in sweep.output, sweep.output[-3000:]


# --- the MLflow UI in headless Chromium --------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; without one the UI test fails where CI requires it, else skips."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("FEDLAB_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"{reason}, and FEDLAB_REQUIRE_CHROMIUM=1 requires it")
    pytest.skip(f"{reason}; set FEDLAB_REQUIRE_CHROMIUM=1 to make this a failure")


def headless(chromium: str, profile: Path, *args: str) -> str:
    """Run headless Chromium once, in a session of its own, and stop its whole group after."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",  # as root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        out, err = "", "(timed out)"
    finally:
        stop_group(proc, grace=10)
    assert proc.returncode == 0 or out, f"chromium failed ({proc.returncode}): {err[-2000:]}"
    return out


def page_text(dom: str) -> str:
    """The visible words of a dumped DOM."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


def dump_dom(chromium: str, profile: Path, url: str, expected: list[str]) -> str:
    """The DOM of ``url`` once the React app has rendered; ``--virtual-time-budget`` lets the
    page run (timers, and the runs' XHRs) for that much virtual time before the dump. Retried
    with a longer budget if a busy machine left something in ``expected`` out."""
    for budget in (20000, 60000):
        dom = headless(chromium, profile, f"--virtual-time-budget={budget}", "--dump-dom", url)
        if all(s in dom for s in expected):
            break
    return dom


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_mlflow_ui_lists_the_sweep_and_its_runs(
    chromium: str, mlflow_server: Server, sweep: Sweep, tmp_path: Path
) -> None:
    runs_page = f"{mlflow_server.url}/#/experiments/{sweep.experiment_id}/runs"
    parent_id, parent_name = sweep.parent["info"]["run_id"], sweep.parent["info"]["run_name"]
    run_link = f"#/experiments/{sweep.experiment_id}/runs/"

    # The runs page as it opens: the sweep's parent run, its four jobs nested (collapsed) under it.
    dom = dump_dom(chromium, tmp_path / "profile", runs_page, [parent_name])
    text = page_text(dom)
    assert "fedlab" in text
    assert parent_name in text, text[:3000]
    assert f'href="{run_link}{parent_id}"' in dom
    assert "5 matching runs" in text, text[:3000]

    # Sorted by name the UI lists every run flat, each linking to its page.
    by_name = f"{runs_page}?orderByKey=attributes.run_name&orderByAsc=true"
    dom = dump_dom(chromium, tmp_path / "profile", by_name, sorted(JOB_NAMES))
    text = page_text(dom)
    for run in sweep.jobs:
        assert run["info"]["run_name"] in text, (run["info"]["run_name"], text[:3000])
        assert f'href="{run_link}{run["info"]["run_id"]}"' in dom

    screenshot = tmp_path / "runs.png"
    headless(
        chromium,
        tmp_path / "profile",
        "--virtual-time-budget=20000",
        "--hide-scrollbars",
        "--window-size=1600,900",
        f"--screenshot={screenshot}",
        by_name,
    )
    assert png_size(screenshot) == (1600, 900)
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_a_server_that_refuses_dataset_inputs_gets_them_as_tags(
    mlflow_server: Server, tmp_path: Path, caplog
) -> None:
    """A server older than MLflow 2.4 has no runs/log-inputs endpoint: the run goes on, warns
    once, and records the same facts as tags; nothing else is lost."""
    from fedlab.experiment import run
    from fedlab.tracking.mlflow import MlflowTracker
    from tests.conftest import checked

    cfg = checked(
        "model=2nn", "client_optimizer=sgd", "server_optimizer=sgd", "C=0.05", "B=50",
        "rounds=1", "tracking.log_model=false", "tracking.experiment=older",
    )  # fmt: skip
    with refusing_proxy(mlflow_server, ("/api/2.0/mlflow/runs/log-inputs",)) as url:
        tracker = MlflowTracker(url, "older")
        with caplog.at_level("WARNING", logger="fedlab"):
            result = run(cfg, output_dir=tmp_path, tracker=tracker,
                         checkpoint_dir=tmp_path / "checkpoints", progress=False)  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if "run inputs" in r.getMessage()]
    assert len(warned) == 1 and "404" in warned[0], warned
    recorded = get(mlflow_server, "/api/2.0/mlflow/runs/get", run_id=tracker.run_id)["run"]
    assert recorded["info"]["status"] == "FINISHED"
    assert recorded.get("inputs", {}).get("dataset_inputs", []) == []
    run_tags = tags(recorded)
    assert run_tags["fedlab.dataset.training.name"] == "mnist"
    assert len(run_tags["fedlab.dataset.training.digest"]) == 16
    assert run_tags["fedlab.dataset.training.partition"] == "iid"
    assert run_tags["fedlab.dataset.evaluation.examples"] == "10000"
    metrics = {m["key"] for m in recorded["data"]["metrics"]}
    assert {"eval/accuracy", "train/loss"} <= metrics and result.rounds == 1
