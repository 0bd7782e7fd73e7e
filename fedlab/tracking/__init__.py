"""Where results leave the process: a small tracker interface, MLflow behind it.

The round loop calls a tracker at the start of a run, after each round and at the end (the shape
of pfl-research's callbacks). ``NullTracker`` records nothing and serves ``tracking=none``;
``MlflowTracker`` imports mlflow only when it is used.
"""

from __future__ import annotations

from pathlib import Path

from fedlab.config import TrackingBackend, TrackingConfig, flatten
from fedlab.tracking.base import DatasetRecord, NullTracker, Tracker

__all__ = [
    "DatasetRecord",
    "NullTracker",
    "Tracker",
    "create_tracker",
    "default_tracking_uri",
    "flatten",
]


def create_tracker(cfg: TrackingConfig, default_uri: str) -> Tracker:
    """The tracker ``cfg`` asks for; ``default_uri`` is used when ``cfg.uri`` is null."""
    if cfg.backend is TrackingBackend.none:
        return NullTracker()
    from fedlab.tracking.mlflow import MlflowTracker

    return MlflowTracker(
        uri=cfg.uri or default_uri, experiment=cfg.experiment, system_metrics=cfg.system_metrics
    )


def default_tracking_uri(cwd: str | Path) -> str:
    """MLflow's store when ``tracking.uri`` is null: a SQLite file where the command runs."""
    return f"sqlite:///{Path(cwd).resolve() / 'mlflow.db'}"
