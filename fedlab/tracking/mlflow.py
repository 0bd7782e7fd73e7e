"""MLflow behind the tracker interface: params, tags, per-round metrics, artifacts, status.

Every string recorded here (params, tags, run names, text artifacts) and every location printed
goes through ``fedlab.credentials.redact``: no password in a URL reaches MLflow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# fedlab's output is its progress bar, its summary and its errors; it says where the run is in
# its closing summary. MLflow's INFO lines (creating the SQLite tables) would interleave with the
# progress bar, and a run on a tracking server (a RestStore) ends with MLflow writing
# "🏃 View run ... at: URL" and "🧪 View experiment at: URL" to stdout, from
# MlflowClient.set_terminated, unless MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT (read at each call).
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

import mlflow  # noqa: E402
from mlflow.entities import Dataset, DatasetInput, InputTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT  # noqa: E402

from fedlab.credentials import redact  # noqa: E402
from fedlab.errors import UserError  # noqa: E402
from fedlab.tracking.base import DatasetRecord, Tracker  # noqa: E402

log = logging.getLogger(__name__)

_MAX_TAG_CHARS = 5000
_TEXT_ARTIFACTS = {".yaml", ".yml", ".json", ".md", ".csv", ".txt", ".log"}


def _tags(tags: dict[str, str]) -> dict[str, str]:
    return {key: redact(str(value)) for key, value in tags.items()}


class MlflowTracker(Tracker):
    """One MLflow run in ``experiment`` at tracking URI ``uri``."""

    def __init__(self, uri: str, experiment: str, system_metrics: bool = False) -> None:
        _check_reachable(uri)
        self.uri = uri
        self.experiment = experiment
        self.system_metrics = system_metrics
        with _store_lock(uri):  # a new SQLite store is created (migrated) here
            self.client = MlflowClient(tracking_uri=uri)
        self._run_id: str | None = None
        self.experiment_id: str | None = None
        self._monitor = None  # MLflow's SystemMetricsMonitor, with tracking.system_metrics

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        with _store_lock(self.uri):
            found = self.client.get_experiment_by_name(self.experiment)
            self.experiment_id = (
                found.experiment_id if found else self.client.create_experiment(self.experiment)
            )
        run = self.client.create_run(
            self.experiment_id, run_name=redact(run_name), tags=_tags(tags)
        )
        self._run_id = run.info.run_id
        for chunk in _chunks(sorted(params.items()), 100):  # MLflow's batch limit for params
            self.client.log_batch(
                self.run_id,
                params=[
                    mlflow.entities.Param(k, "null" if v is None else redact(str(v)))
                    for k, v in chunk
                ],
            )
        self._start_system_metrics(resumed=False)

    def _start_system_metrics(self, resumed: bool) -> None:
        """MLflow's system metrics (``system/cpu_utilization_percentage``, memory, disk,
        network; GPUs with pynvml) every 10 s, with ``tracking.system_metrics=true``."""
        if not self.system_metrics:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(
            self.run_id, resume_logging=resumed, tracking_uri=self.uri
        )
        self._monitor.start()

    def log_datasets(self, inputs: list[DatasetRecord]) -> None:
        """The datasets as the run's inputs (the MLflow UI's Dataset column). A store that does
        not take inputs (a server older than MLflow 2.4) gets the same facts as tags
        ``fedlab.dataset.<context>.*``, and a warning says so: nothing is lost."""
        entities = [
            DatasetInput(
                Dataset(
                    name=record.name,
                    digest=record.digest,
                    source_type="local",
                    source=json.dumps({"uri": redact(record.source)}),
                    profile=json.dumps(record.profile, sort_keys=True),
                ),
                tags=[
                    InputTag(MLFLOW_DATASET_CONTEXT, record.context),
                    *(InputTag(f"fedlab.{k}", str(v)) for k, v in record.profile.items()),
                ],
            )
            for record in inputs
        ]
        try:
            self.client.log_inputs(self.run_id, datasets=entities)
        except MlflowException as err:
            first_line = str(err).strip().splitlines()[0][:300] if str(err).strip() else err
            log.warning(
                "the tracking store did not take the datasets as run inputs (%s); they are "
                "recorded as tags fedlab.dataset.* instead",
                first_line,
            )
            tags = {}
            for record in inputs:
                prefix = f"fedlab.dataset.{record.context}"
                tags |= {
                    f"{prefix}.name": record.name,
                    f"{prefix}.digest": record.digest,
                    f"{prefix}.source": record.source,
                    **{f"{prefix}.{k}": str(v) for k, v in record.profile.items()},
                }
            self.set_tags(tags)

    @property
    def store(self) -> str:
        return f"{self.uri} experiment={self.experiment}"

    def holds(self, run_id: str | None) -> bool:
        if run_id is None:
            return False
        try:
            run = self.client.get_run(run_id)
            experiment = self.client.get_experiment(run.info.experiment_id)
        except MlflowException:  # not in this store
            return False
        return run.info.lifecycle_stage == "active" and experiment.name == self.experiment

    def set_tags(self, tags: dict[str, str]) -> None:
        """Add or replace tags on the open run."""
        for key, value in _tags(tags).items():
            self.client.set_tag(self.run_id, key, value)

    def open_parent(self, run_name: str, sweep_id: str, tags: dict[str, str]) -> None:
        """Open the parent run of sweep ``sweep_id``, or reopen it if this store has it already
        (a continued Optuna study, a sweep re-run into the same directory, a second sweep driver
        on another machine)."""
        tags = _tags(tags)
        with _store_lock(self.uri):
            found = self.client.get_experiment_by_name(self.experiment)
            self.experiment_id = (
                found.experiment_id if found else self.client.create_experiment(self.experiment)
            )
            existing = self._sweep_parents(sweep_id)
            if existing:
                self._run_id = existing[0].info.run_id
                self.client.update_run(self._run_id, status="RUNNING")
                for key, value in tags.items():
                    self.client.set_tag(self._run_id, key, value)
                return
            run = self.client.create_run(self.experiment_id, run_name=redact(run_name), tags=tags)
        self._run_id = run.info.run_id
        # Two drivers of one sweep (one Optuna study from two machines) may both have found no
        # parent and created one each; a server store has no lock to prevent it. Both keep the
        # oldest, as the jobs do (``find_sweep_parent``), and the newer one is deleted.
        oldest = self._sweep_parents(sweep_id)[0].info.run_id
        if oldest != self._run_id:
            self.client.delete_run(self._run_id)
            self._run_id = oldest
            self.client.update_run(oldest, status="RUNNING")

    def find_sweep_parent(self, sweep_id: str):
        """The parent run of sweep ``sweep_id`` in this experiment (the oldest, if two drivers
        raced to open it), or None. A job finds its sweep this way on any machine."""
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            return None
        self.experiment_id = found.experiment_id
        parents = self._sweep_parents(sweep_id)
        return parents[0] if parents else None

    def _sweep_parents(self, sweep_id: str) -> list:
        quoted = f'"{sweep_id}"' if "'" in sweep_id else f"'{sweep_id}'"
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`fedlab.role` = 'sweep' and tags.`fedlab.sweep_id` = {quoted}",
            max_results=100,
        )
        return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))

    def child_runs(self) -> list:
        """The runs nested under this one (a sweep's jobs), oldest first."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.run_id}'",
            max_results=5000,
        )
        return sorted(runs, key=lambda run: run.info.start_time)

    def adopt(self, run_id: str | None) -> None:
        if run_id is not None:
            self._run_id = run_id
            self.experiment_id = self.client.get_run(run_id).info.experiment_id

    def resume(self, run_id: str | None) -> int:
        if run_id is None:
            raise ValueError("this checkpoint has no MLflow run to continue")
        with _store_lock(self.uri):
            run = self.client.get_run(run_id)  # MlflowException if the store lost it
        self._run_id = run_id
        self.experiment_id = run.info.experiment_id
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, "fedlab.resumed", "true")
        self._start_system_metrics(resumed=True)
        history = self.client.get_metric_history(run_id, "train/loss")
        return max((m.step for m in history), default=0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.client.log_batch(
            self.run_id,
            metrics=[
                mlflow.entities.Metric(key, float(value), _now_ms(), step)
                for key, value in metrics.items()
            ],
        )

    def metric_history(self, run_id: str | None = None) -> dict[str, list[tuple[int, float]]]:
        run_id = run_id or self.run_id
        if run_id is None:
            return {}
        keys = self.client.get_run(run_id).data.metrics
        history = {}
        for key in sorted(keys):
            # The latest value where a step was logged twice (a round recomputed after a kill).
            points = sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
            by_step = {int(m.step): float(m.value) for m in points}
            history[key] = sorted(by_step.items())
        return history

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Attach ``path``; a text file that holds a password in a URL is attached redacted."""
        path = Path(path)
        if path.suffix in _TEXT_ARTIFACTS and path.is_file():
            text = path.read_text(errors="replace")
            if redact(text) != text:
                with tempfile.TemporaryDirectory() as tmp:
                    copy = Path(tmp) / path.name
                    copy.write_text(redact(text))
                    shutil.copystat(path, copy)
                    self.client.log_artifact(self.run_id, str(copy), artifact_path)
                return
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str, reason: str | None = None) -> None:
        if self.run_id is None:
            return
        if self._monitor is not None:
            self._monitor.finish()  # its last samples, while the run still takes metrics
            self._monitor = None
        if reason:
            text = redact(reason)[:_MAX_TAG_CHARS]
            self.client.set_tag(self.run_id, "fedlab.failure", text)
            # The run's description in the MLflow UI.
            self.client.set_tag(self.run_id, "mlflow.note.content", f"{status}: {text}")
        self.client.set_terminated(self.run_id, status=status)

    @property
    def location(self) -> str | None:
        if self.run_id is None:
            return None
        return f"MLflow run {self.run_id} in experiment '{self.experiment}' at {redact(self.uri)}"


@contextlib.contextmanager
def _store_lock(uri: str):
    """Serialise the first use of a SQLite store across processes.

    Parallel jobs that find no ``mlflow.db`` all run MLflow's schema migrations at once, and
    all but one crash (alembic: "expected to match one row"); jobs that find no experiment all
    create it, and all but one fail its unique constraint. A lock file beside the database makes
    them take turns. Other stores (servers, databases) handle their own concurrency.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri[len("sqlite:///") :])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a tracking server that is not there: MLflow's own client retries an
    unreachable server for minutes before it gives up."""
    url = urlparse(uri)
    if url.scheme not in ("http", "https"):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(
            f"tracking.uri={uri} is unreachable ({reason}); start the tracking server, or "
            "allowed instead: tracking.uri=null (a SQLite file here) or tracking=none"
        ) from None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
