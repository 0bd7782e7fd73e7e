"""Reading runs from MLflow: what the report needs from each run (``RunSeries``), and the
searches that find an experiment's runs, a sweep's parent run and its jobs.

Only finished runs that logged test accuracy are compared; every other run gets a line saying
why it was left out. A store that is not there, a sweep that is not known or a filter MLflow
refuses is a ``ReportError`` with a one-line message.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fedlab.checkpoint import ADDED_LATER
from fedlab.errors import ReportError, UserError

ACCURACY = "eval/accuracy"
TOTAL_MB = "comm/total_mb"
ROUNDS_TO_TARGET = "rounds_to_target"
EPSILON = "privacy/epsilon"
CLIENT_MEAN = "eval/client_accuracy_mean"  # logged by federated evaluation only
CLIENT_ACCURACY = "client_accuracy.json"  # fedlab.callbacks.evaluation.CLIENT_ACCURACY
BACKDOOR_ACCURACY = "eval/backdoor_accuracy"  # fedlab.callbacks.backdoor, under a backdoor
# As fedlab.tracking.mlflow logs them (None as "null").
ADDED_LATER_PARAMS = {k: "null" if v is None else str(v) for k, v in ADDED_LATER.items()}
DIVERGED = "fedlab.diverged"  # fedlab.experiment.DIVERGED_TAG: diverged under attack
PERSONALIZED_MEAN = "eval/personalized_accuracy_mean"  # logged by personalized evaluation only
# fedlab.callbacks.personalized.PERSONALIZED_ACCURACY
PERSONALIZED_ACCURACY = "personalized_accuracy.json"
PRUNED_AT_TAG = "fedlab.pruned_at_round"  # fedlab.callbacks.pruning.PRUNED_AT_TAG


@dataclass
class RunSeries:
    """What the report needs from one run."""

    run_id: str
    name: str
    params: dict[str, str]
    accuracy: dict[int, float]  # test accuracy by round
    total_mb: dict[int, float]  # cumulative MB communicated by round
    rounds_to_target: int | None
    epsilon: dict[int, float] = field(default_factory=dict)  # privacy spent by round (DP runs)
    # Federated evaluation's last accuracy of each evaluated client (natural datasets).
    client_accuracy: list[float] = field(default_factory=list)
    # Under attack: "round N: why" if the global model diverged (the run ended there), and the
    # last backdoor accuracy under a backdoor attack.
    diverged: str | None = None
    backdoor_accuracy: float | None = None
    # Personalized evaluation's last record (personalized_accuracy.json): each evaluated
    # client's accuracy with its own model (``personalized``) and the global one (``global``)
    # on its own test data, and both pooled (``pooled``); empty without one.
    personalized: dict[str, Any] = field(default_factory=dict)
    pruned_at: int | None = None  # the round an Optuna search's pruner stopped it at

    @property
    def seed(self) -> str:
        return self.params.get("seed", "?")

    @property
    def final_round(self) -> int:
        return max(self.accuracy)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[self.final_round]

    @property
    def mb_total(self) -> float | None:
        return self.total_mb[max(self.total_mb)] if self.total_mb else None

    @property
    def mb_to_target(self) -> float | None:
        if self.rounds_to_target is None:
            return None
        if self.rounds_to_target == 0:
            return 0.0  # the initial model already reached it: nothing was communicated
        return self.total_mb.get(self.rounds_to_target)


def load_series(client: MlflowClient, runs: Iterable[Any]) -> tuple[list[RunSeries], list[str]]:
    """The finished runs with test accuracy, and a line for each run left out."""
    series, left_out = [], []
    for run in runs:
        name = run.info.run_name or run.info.run_id
        status = run.info.status
        if status != "FINISHED":
            why = run.data.tags.get("fedlab.failure", "")
            why = why.strip().splitlines()[0][:200] if why.strip() else ""
            left_out.append(f"{name} ({run.info.run_id}): {status}{': ' + why if why else ''}")
            continue
        accuracy = _history(client, run.info.run_id, ACCURACY)
        if not accuracy:
            left_out.append(f"{name} ({run.info.run_id}): no test accuracy logged")
            continue
        reached = run.data.metrics.get(ROUNDS_TO_TARGET)
        pruned_at = run.data.tags.get(PRUNED_AT_TAG)
        series.append(
            RunSeries(
                run_id=run.info.run_id,
                name=name,
                # A run recorded before a key was added computed what its default computes.
                params={**ADDED_LATER_PARAMS, **run.data.params},
                accuracy=accuracy,
                total_mb=_history(client, run.info.run_id, TOTAL_MB),
                rounds_to_target=None if reached is None else int(reached),
                epsilon=(
                    _history(client, run.info.run_id, EPSILON)
                    if EPSILON in run.data.metrics
                    else {}
                ),
                client_accuracy=(
                    _client_accuracy(client, run.info.run_id)
                    if CLIENT_MEAN in run.data.metrics
                    else []
                ),
                diverged=run.data.tags.get(DIVERGED),
                backdoor_accuracy=run.data.metrics.get(BACKDOOR_ACCURACY),
                personalized=(
                    _artifact_json(client, run.info.run_id, PERSONALIZED_ACCURACY) or {}
                    if PERSONALIZED_MEAN in run.data.metrics
                    else {}
                ),
                pruned_at=int(pruned_at) if pruned_at else None,
            )
        )
    return series, left_out


def _client_accuracy(client: MlflowClient, run_id: str) -> list[float]:
    """The run's ``client_accuracy.json`` (empty where it has none: a run that ended before
    fedlab logged it)."""
    record = _artifact_json(client, run_id, CLIENT_ACCURACY)
    return [float(a) for a in record["accuracy"]] if record else []


def _artifact_json(client: MlflowClient, run_id: str, name: str) -> Any:
    """A JSON artifact of the run; None where it has none."""
    if not any(f.path == name for f in client.list_artifacts(run_id)):
        return None
    with tempfile.TemporaryDirectory() as where:
        path = client.download_artifacts(run_id, name, where)
        return json.loads(Path(path).read_text())


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """A metric by step (the latest value where a step was logged twice)."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
    return {int(m.step): float(m.value) for m in points}


def _open_store(uri: str) -> MlflowClient:
    """A client for ``uri`` if a store is there; MLflow would create an empty one."""
    from fedlab.tracking.mlflow import _check_reachable

    hint = "run where the runs' mlflow.db is, or pass --tracking-uri"
    if uri.startswith("sqlite:///"):
        if not Path(uri[len("sqlite:///") :]).is_file():
            raise ReportError(f"no MLflow store at {uri} (no such file); {hint}")
    elif uri.startswith(("http://", "https://")):
        try:
            _check_reachable(uri)
        except UserError:
            raise ReportError(f"the MLflow server at {uri} is unreachable; {hint}") from None
    elif "://" not in uri or uri.startswith("file:"):
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        if not path.is_dir():
            raise ReportError(f"no MLflow store at {uri} (no such directory); {hint}")
    try:
        return MlflowClient(tracking_uri=uri)
    except MlflowException as err:
        raise ReportError(
            f"cannot open the MLflow store at {uri}: {_first_line(err.message)}"
        ) from None


def _find_sweep(client: MlflowClient, exp_id: str, sweep: str) -> Any:
    parents = _search(client, exp_id, "tags.`fedlab.role` = 'sweep'", None)
    parents.sort(key=lambda r: r.info.start_time or 0, reverse=True)
    if not parents:
        raise ReportError(f"no sweeps in experiment {exp_id}; run one with python -m fedlab -m ...")
    if sweep == "latest":
        return parents[0]
    wanted = sweep.rstrip("/")
    for run in parents:
        known = run.data.tags.get("fedlab.sweep_id", "")
        if known == wanted or Path(known).resolve() == Path(wanted).resolve():
            return run
    recent = ", ".join(r.data.tags.get("fedlab.sweep_id", "?") for r in parents[:3])
    raise ReportError(f"unknown sweep '{sweep}'; the latest are: {recent} (or --sweep latest)")


def _search(client: MlflowClient, exp_id: str, filter_string: str, user_filter: str | None) -> list:
    """Every run matching ``filter_string``, oldest first."""
    runs, token = [], None
    try:
        while True:
            page = client.search_runs(
                [exp_id],
                filter_string=filter_string,
                max_results=1000,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs
    except MlflowException as err:
        if user_filter:
            raise ReportError(f"--filter {user_filter!r}: {_first_line(err.message)}") from None
        raise


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0].strip() if text else "unknown error"
