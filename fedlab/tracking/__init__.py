"""Where results leave the process: a small tracker interface, MLflow behind it.

The round loop calls a tracker at the start of a run, after each round and at the end (the shape
of pfl-research's callbacks). ``NullTracker`` records nothing and serves ``tracking=none``;
``MlflowTracker`` imports mlflow only when it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedlab.config import TrackingBackend, TrackingConfig


class Tracker:
    """Records one run. This base class records nothing (``tracking=none``)."""

    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        """Open the run and record its configuration."""

    def resume(self, run_id: str | None) -> int:
        """Reopen run ``run_id`` to continue it; return the last round it has metrics for."""
        return -1

    def set_tags(self, tags: dict[str, str]) -> None:
        """Add or replace tags on the open run."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record the metrics of round ``step``."""

    def log_artifact(self, path: Path) -> None:
        """Attach a file to the run."""

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


def create_tracker(cfg: TrackingConfig, default_uri: str) -> Tracker:
    """The tracker ``cfg`` asks for; ``default_uri`` is used when ``cfg.uri`` is null."""
    if cfg.backend is TrackingBackend.none:
        return NullTracker()
    from fedlab.tracking.mlflow import MlflowTracker

    return MlflowTracker(uri=cfg.uri or default_uri, experiment=cfg.experiment)


def default_tracking_uri(cwd: str | Path) -> str:
    """MLflow's store when ``tracking.uri`` is null: a SQLite file where the command runs."""
    return f"sqlite:///{Path(cwd).resolve() / 'mlflow.db'}"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: config values as MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
