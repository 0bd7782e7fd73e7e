"""The tracker interface: what a run records, and where a person finds it.

``Tracker`` itself records nothing (``tracking=none``); ``fedlab.tracking.mlflow.MlflowTracker``
records into MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset a run used, as its lineage records it: ``context`` is ``training`` (the
    examples as partitioned over the clients) or ``evaluation`` (the test examples)."""

    name: str
    digest: str  # fedlab.data.base.FederatedDataset.digest / test_digest
    source: str  # where it was loaded from, in words
    context: str
    profile: dict[str, Any] = field(default_factory=dict)  # examples, clients, partition, ...


class Tracker:
    """Records one run. This base class records nothing (``tracking=none``)."""

    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        """Open the run and record its configuration."""

    @property
    def store(self) -> str:
        """The store and experiment runs are recorded in, in words: what scopes a run's
        checkpoint (``fedlab.checkpoint.store_key``). Nothing is recorded here: "none"."""
        return "none"

    def holds(self, run_id: str | None) -> bool:
        """Whether this store and experiment hold run ``run_id`` (not deleted), so that a
        checkpoint of it can continue it here. Nothing is recorded here: any run will do."""
        return True

    def adopt(self, run_id: str | None) -> None:
        """Point at run ``run_id`` (which ``holds``) without reopening it: a finished run that
        has nothing left to run, so that ``location`` says where it is."""

    def resume(self, run_id: str | None) -> int:
        """Reopen run ``run_id`` to continue it; return the last round it has metrics for."""
        return -1

    def set_tags(self, tags: dict[str, str]) -> None:
        """Add or replace tags on the open run."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record the metrics of round ``step``."""

    def log_artifact(self, path: Path) -> None:
        """Attach a file to the run."""

    def log_datasets(self, inputs: list[DatasetRecord]) -> None:
        """Record what the run trained and was evaluated on (its lineage)."""

    def metric_history(self, run_id: str | None = None) -> dict[str, list[tuple[int, float]]]:
        """Every metric the store holds for run ``run_id`` (default: the open run), as
        ``(step, value)`` pairs by step; empty where nothing is stored."""
        return {}

    def find_sweep_parent(self, sweep_id: str) -> Any:
        """The parent run of sweep ``sweep_id`` (see ``fedlab.sweep``), or None."""
        return None

    def finish(self, status: str, reason: str | None = None) -> None:
        """Close the run as FINISHED, FAILED (with ``reason``) or KILLED."""

    @property
    def run_id(self) -> str | None:
        """The run's id in the tracker, saved in checkpoints to continue the same run."""
        return None

    @property
    def location(self) -> str | None:
        """Where a person finds the run, or None when nothing is recorded."""
        return None


NullTracker = Tracker
