"""Sweeps as one unit in MLflow: a parent run per sweep, every job a run nested under it.

A Hydra callback (``hydra.callbacks.fedlab_sweep`` in ``conf/config.yaml``) runs in the process
that launches the sweep, whatever the launcher:

- ``on_multirun_start`` opens (or, for the same sweep directory, reopens) the sweep's parent run,
  tagged ``fedlab.role=sweep``, ``fedlab.sweep_id`` and ``fedlab.swept_keys``;
- each job (``fedlab.__main__``), wherever it runs (this process, a joblib worker, a Ray worker
  on another machine, a SLURM node), finds that parent in MLflow by its sweep id, which Hydra
  gives every job (``hydra.sweep.dir``): nothing is passed through environment variables, which
  a job on another machine does not inherit. It tags its run with ``mlflow.parentRunId`` (which
  the MLflow UI nests by), the sweep id, its job number, the node it ran on (``fedlab.node``:
  the Ray node id under Ray, else the host name) and, in an Optuna search, its trial number,
  and is named from its swept overrides (``partition=shards,C=0.1``);
- ``on_multirun_end`` records the best job (for an Optuna search: the study's best parameters
  and value, from the sweeper's ``optimization_results.yaml``), writes the comparison report
  (``fedlab.report``) onto the parent run, and ends it FINISHED. A sweep that dies on the way
  (Ctrl-C, SIGTERM, an error) ends its parent KILLED or FAILED at exit instead.

The sweep id is the sweep directory (``hydra.sweep.dir``): a new one per invocation by default;
the Optuna presets fix it per study, so that continuing a study continues its parent run.
"""

from __future__ import annotations

import atexit
import functools
import os
import socket
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fedlab.config import Objective, TrackingBackend, TrackingConfig
from fedlab.credentials import redact, refuse_password
from fedlab.describe import FULL_ERROR, describe
from fedlab.errors import ConfigError, UserError
from fedlab.tracking import default_tracking_uri

ROLE_TAG = "fedlab.role"  # "sweep" on a parent run, "job" on its children
SWEEP_TAG = "fedlab.sweep_id"
SWEPT_KEYS_TAG = "fedlab.swept_keys"
JOB_TAG = "fedlab.job_num"
TRIAL_TAG = "fedlab.trial"
NODE_TAG = "fedlab.node"
PARENT_TAG = "mlflow.parentRunId"
LOG_TAG = "fedlab.log_file"  # the job's log file (fedlab.logs), also attached to its run


def swept_keys(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> list[str]:
    """The keys a sweep varies: command-line sweeps (``C=0.1,0.2``, ``tag(log, ...)``) and the
    sweeper's ``params`` (a preset's search space), in the order given."""
    keys: list[str] = []
    for override in OverridesParser.create().parse_overrides(task_overrides):
        if override.is_sweep_override():
            keys.append(override.get_key_element())
    for key in sweeper_params or {}:
        if key not in keys:
            keys.append(key)
    return keys


def job_name(task_overrides: list[str], keys: list[str]) -> str:
    """``partition=shards,C=0.1``: the job's values of the swept keys (all overrides if none)."""
    by_key = {o.split("=", 1)[0].lstrip("+~"): o for o in task_overrides}
    chosen = [by_key[key] for key in keys if key in by_key]
    return ",".join(chosen or task_overrides) or "defaults"


@dataclass(frozen=True)
class SweepJob:
    """What a job learns about its sweep from the sweep's parent run in MLflow."""

    parent_run_id: str
    sweep_id: str
    swept_keys: list[str]


def find_sweep(tracker, sweep_id: str) -> SweepJob | None:
    """The sweep ``sweep_id`` (``hydra.sweep.dir``) as its parent run in the job's tracking
    store records it; None without tracking or when the store has no such sweep."""
    parent = tracker.find_sweep_parent(sweep_id)
    if parent is None:
        return None
    keys = parent.data.tags.get(SWEPT_KEYS_TAG, "")
    return SweepJob(parent.info.run_id, sweep_id, [k for k in keys.split(",") if k])


def node_tags() -> dict[str, str]:
    """Where this job ran: ``fedlab.node`` is the Ray node id when a Ray worker runs the job
    (two Ray nodes on one machine share a host name), else the host name; the host and the
    process id are recorded either way."""
    host = socket.gethostname()
    node = None
    ray = sys.modules.get("ray")  # imported only when a Ray launcher runs this job
    if ray is not None and ray.is_initialized():
        node = ray.get_runtime_context().get_node_id()
    return {NODE_TAG: node or host, "fedlab.host": host, "fedlab.pid": str(os.getpid())}


def job_tags(sweep: SweepJob | None, job_num: int, trial: int | None) -> dict[str, str]:
    """The tags that put a job's run under its sweep's parent (empty outside a sweep)."""
    if sweep is None:
        return {}
    tags = {
        PARENT_TAG: sweep.parent_run_id,
        SWEEP_TAG: sweep.sweep_id,
        ROLE_TAG: "job",
        JOB_TAG: str(job_num),
        **node_tags(),
    }
    if trial is not None:
        tags[TRIAL_TAG] = str(trial)
    return tags


def study_storage(sweeper: DictConfig) -> Any:
    """The Optuna sweeper's storage as Optuna takes it: a database URL (``sqlite:///...``,
    ``postgresql://...``), or a storage object built from a ``_target_`` node (the journal file
    of ``hydra/sweeper/storage=journal``), as the sweeper's own instantiation builds it."""
    storage = sweeper.get("storage")
    if isinstance(storage, DictConfig):
        from hydra.utils import instantiate

        return instantiate(storage)
    return storage


def prepare_study_storage(storage: Any, attempts: int = 5) -> None:
    """Create an Optuna study database's schema before the sweeper opens it. Optuna's
    ``RDBStorage`` checks for its tables and types, then creates them, unguarded: two drivers
    started together on one new database race, and the loser fails (PostgreSQL: ``CREATE TYPE
    studydirection``: "already exists"). The loser retries here, a moment later, and finds the
    schema complete. Only a database URL has a schema; a storage object (a journal file) has
    none. A database that cannot be reached is a one-line error, before the sweep's first job."""
    if not isinstance(storage, str) or not storage:
        return
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            optuna.storages.RDBStorage(storage).remove_session()
            return
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
        except OperationalError as err:  # the database is not there, or refuses us
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            raise UserError(
                f"hydra.sweeper.storage={redact(storage)} is unreachable ({reason}); start the "
                "database, or allowed instead: a SQLite file (sqlite:///study.db) or "
                "+hydra/sweeper/storage=journal"
            ) from None


def storage_label(storage: Any) -> str:
    """The storage in words, for the parent run's tag: a URL (never with a password), or the
    storage class and its file."""
    if isinstance(storage, DictConfig):
        target = str(storage.get("_target_", "")).rsplit(".", 1)[-1]
        path = OmegaConf.select(storage, "log_storage.file_path")
        return f"{target}({path})" if path else target
    return redact(str(storage))


def check_storage(storage: Any) -> None:
    """A study's storage URL must not carry a password (see ``fedlab.credentials``)."""
    if isinstance(storage, str):
        refuse_password("hydra.sweeper.storage", storage)


def optuna_trial_number(sweeper: DictConfig, overrides: list[str]) -> int | None:
    """This job's Optuna trial number, found in the study's storage.

    The Optuna sweeper does not tell a job which trial it is; Hydra's job number restarts at 0
    when a study is continued, the trial number does not. The job's trial is the running trial
    whose parameters are this job's overrides.
    """
    study_name = sweeper.get("study_name")
    if not sweeper.get("storage") or not study_name:
        return None
    import optuna

    values = dict(o.split("=", 1) for o in overrides if "=" in o)
    try:
        study = optuna.load_study(study_name=study_name, storage=study_storage(sweeper))
    except (KeyError, ValueError):
        return None
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        if all(_same_value(values.get(k), v) for k, v in trial.params.items()):
            return trial.number
    return None


def trial_link(sweeper: DictConfig, trial_number: int | None) -> Any:
    """Where this job's trial is, for the pruning callback (``fedlab.callbacks.pruning``);
    None outside an Optuna search with a storage, or when the trial was not found."""
    if trial_number is None:
        return None
    from fedlab.callbacks.pruning import TrialLink

    return TrialLink(study_storage(sweeper), str(sweeper.study_name), trial_number)


def let_jobs_prune_their_trials() -> None:
    """Let a job end its own trial PRUNED, under hydra-optuna-sweeper.

    The sweeper tells each trial COMPLETE (or FAIL) once its job returns, and knows no other
    end (hydra#1954). A fedlab job that its pruner stopped has already told its trial PRUNED
    (``fedlab.callbacks.pruning``), and Optuna refuses to tell a finished trial again
    ("Cannot tell a PRUNED trial"); the sweeper's error handling then tells it FAIL, which is
    refused the same way, and the whole search stops. So in the sweep's driver, Optuna's
    ``Study.tell`` leaves a trial that is already PRUNED as it is, with Optuna's own
    ``skip_if_finished``; every other tell is as it was. Installed once per process, by the
    sweep callback, for Optuna searches only: the one place fedlab changes a library's code.
    """
    import optuna

    tell = optuna.study.Study.tell
    if getattr(tell, "fedlab_skips_pruned", False):
        return

    @functools.wraps(tell)
    def tell_unless_pruned(study, trial, values=None, state=None, skip_if_finished=False):
        number = trial if isinstance(trial, int) else getattr(trial, "number", None)
        if not skip_if_finished and number is not None:
            ended = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
            skip_if_finished = any(t.number == number for t in ended)
        return tell(study, trial, values, state, skip_if_finished)

    tell_unless_pruned.fedlab_skips_pruned = True
    optuna.study.Study.tell = tell_unless_pruned


def link_trial(sweeper: DictConfig, trial_number: int, run_id: str) -> None:
    """Record the trial's MLflow run on the trial itself (user attribute ``mlflow_run_id``), so
    that Optuna's tools lead back to the run. A trial that has ended already (pruned: its job
    linked it before telling it so, ``fedlab.callbacks.pruning``) is left as it is."""
    import optuna

    storage = optuna.storages.get_storage(study_storage(sweeper))
    study_id = storage.get_study_id_from_name(sweeper.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
    if not storage.get_trial(trial_id).state.is_finished():
        storage.set_trial_user_attr(trial_id, "mlflow_run_id", run_id)


def _same_value(text: str | None, value: Any) -> bool:
    if text is None:
        return False
    if isinstance(value, float):
        try:
            return abs(float(text) - value) <= 1e-12 * max(1.0, abs(value))
        except ValueError:
            return False
    return text == str(value)


def objective_value(objective: Objective, result: Any, rounds: int) -> float:
    """What a sweeper optimizes: test accuracy (final or best, maximized) or rounds to the
    target (minimized; a run that never reaches it scores ``rounds + 1``, worse than any that
    does)."""
    if objective is Objective.final_accuracy:
        return result.final_accuracy
    if objective is Objective.best_accuracy:
        return result.best_accuracy
    reached = result.rounds_to_target
    return float(reached if reached is not None else rounds + 1)


class SweepTracking(Callback):
    """Opens and closes a sweep's parent MLflow run (see the module docstring)."""

    def __init__(self) -> None:
        self._tracker = None
        self._ended = False
        self._pruning = None  # the search's pruning config (fedlab.callbacks.pruning)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and carries on; bad input must stop
        # the sweep before its first job instead, in one line, as it does for a single run.
        try:
            check_direction(config.get("objective"), config.hydra.sweeper.get("direction"))
            check_storage(config.hydra.sweeper.get("storage"))
            self._pruning = check_pruning(config)
            if sweeper_name(config.hydra) == "optuna":
                let_jobs_prune_their_trials()
                prepare_study_storage(config.hydra.sweeper.get("storage"))
            self._open_parent(config)
        except Exception as err:
            message = describe(err)
            if message is None or FULL_ERROR:
                traceback.print_exc()
                raise SystemExit(1) from None
            print(f"fedlab: error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    def _open_parent(self, config: DictConfig) -> None:
        tracking = _tracking_config(config)
        if tracking is None or tracking.backend is TrackingBackend.none:
            return
        from fedlab.tracking.mlflow import MlflowTracker

        hydra = config.hydra
        sweep_id = str(hydra.sweep.dir)
        task_overrides = list(hydra.overrides.task)
        params = hydra.sweeper.get("params")
        params = OmegaConf.to_container(params) if params else {}
        keys = swept_keys(task_overrides, params)
        cwd = hydra.runtime.get("cwd") or os.getcwd()
        uri = tracking.uri or default_tracking_uri(cwd)
        tracker = MlflowTracker(uri=uri, experiment=tracking.experiment)
        sweeper = sweeper_name(hydra)
        tags = {
            ROLE_TAG: "sweep",
            SWEEP_TAG: sweep_id,
            "fedlab.sweeper": sweeper,
            SWEPT_KEYS_TAG: ",".join(keys),
            "fedlab.launcher": launcher_name(hydra),
            "overrides": " ".join(task_overrides),
            "mlflow.note.content": (
                f"Sweep over {', '.join(keys) or 'nothing'} ({sweeper}); "
                f"python -m fedlab -m {' '.join(task_overrides)}"
            ),
        }
        if sweeper == "optuna":
            tags["fedlab.study_name"] = str(hydra.sweeper.study_name)
            tags["fedlab.study_storage"] = storage_label(hydra.sweeper.storage)
            tags["fedlab.direction"] = str(hydra.sweeper.direction)
            if self._pruning is not None:
                from fedlab.callbacks.pruning import describe_pruner

                pruning = self._pruning
                tags["fedlab.pruner"] = describe_pruner(pruning.pruner, pruning.pruner_args)
                tags["fedlab.pruning_metric"] = pruning.metric
        tracker.open_parent(f"sweep {sweep_id}", sweep_id, tags)
        self._tracker = tracker
        atexit.register(self._end_if_interrupted)
        print(f"fedlab: sweep {sweep_id}: {tracker.location}", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        tracker = self._tracker
        if tracker is None:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            children = tracker.child_runs()
            failed = [r for r in children if r.info.status == "FAILED"]
            tracker.set_tags(
                {"fedlab.jobs": str(len(children)), "fedlab.jobs_failed": str(len(failed))}
            )
            _record_best(tracker, config, children, sweep_dir / "optimization_results.yaml")
            _write_report(tracker, sweep_dir)
            if sweeper_name(config.hydra) == "optuna" and config.hydra.sweeper.get("storage"):
                metric = self._pruning.metric if self._pruning is not None else None
                _study_figures(tracker, config.hydra.sweeper, sweep_dir / "report", metric)
            _say_where_the_logs_are(children)
        except BaseException as err:
            self._end("FAILED", f"{type(err).__name__}: {err}")
            raise
        self._end("FINISHED")

    def _end(self, status: str, reason: str | None = None) -> None:
        if self._tracker is not None and not self._ended:
            self._ended = True
            self._tracker.finish(status, reason)

    def _end_if_interrupted(self) -> None:
        # at exit, if on_multirun_end never ran: Ctrl-C, SIGTERM or an error ended the sweep.
        if not self._ended:
            self._end("KILLED", "the sweep ended before all its jobs had run")


def check_pruning(config: DictConfig) -> Any:
    """The search's pruning config (``callbacks.pruning``), checked once before the first job,
    in one line as each job would: an unknown pruner, an argument it does not take, a metric
    that moves against the objective. None without one. A grid sweep has no trials to prune:
    said once, and its jobs run to the end."""
    callbacks = config.get("callbacks") or {}
    node = callbacks.get("pruning") if hasattr(callbacks, "get") else None
    if node is None:
        return None
    from fedlab.callbacks import CALLBACKS
    from fedlab.validation import plugin_config

    pruning = plugin_config("callbacks.pruning", node, CALLBACKS, "pruning")
    objective = config.get("objective", Objective.best_accuracy.value)
    CALLBACKS.get("pruning").check(pruning, SimpleNamespace(objective=objective))
    if sweeper_name(config.hydra) != "optuna":
        print(
            "fedlab: callbacks.pruning prunes the trials of an Optuna search "
            "(hparams_search=...); this sweep's jobs run to the end",
            file=sys.stderr,
        )
    return pruning


def check_direction(objective: Any, direction: Any) -> None:
    """An Optuna search must optimize the objective the right way round."""
    if not isinstance(direction, str) or objective not in Objective.__members__:
        return  # not an Optuna search, or a swept objective (each job checks its own)
    want = "minimize" if objective == Objective.rounds_to_target else "maximize"
    if direction != want:
        raise ConfigError(
            f"hydra.sweeper.direction={direction} does not fit objective={objective}; "
            f"allowed: hydra.sweeper.direction={want}"
        )


def _tracking_config(config: DictConfig) -> TrackingConfig | None:
    try:
        return OmegaConf.to_object(config.tracking)
    except Exception:  # a swept tracking group: no single store to hold a parent run
        return None


def launcher_name(hydra: DictConfig) -> str:
    """The ``hydra/launcher`` option (basic, joblib, ray, submitit_slurm, submitit_local)."""
    choice = OmegaConf.select(hydra, "runtime.choices", default=None) or {}
    if choice.get("hydra/launcher"):
        return str(choice["hydra/launcher"])
    target = str(hydra.launcher.get("_target_", ""))
    return target.rsplit(".", 1)[-1].removesuffix("Launcher").lower() or "unknown"


def sweeper_name(hydra: DictConfig) -> str:
    target = str(hydra.sweeper.get("_target_", ""))
    return "optuna" if "optuna" in target.lower() else "basic"


def _record_best(tracker, config: DictConfig, children: list, results_file: Path) -> None:
    """The best job: Optuna's own answer when it is an Optuna search, else the best finished
    child by the sweep's objective."""
    client, run_id = tracker.client, tracker.run_id
    if results_file.is_file():
        results = OmegaConf.load(results_file)
        best_params = results.get("best_params") or {}
        tracker.set_tags({f"best.{key}": str(value) for key, value in best_params.items()})
        if results.get("best_value") is not None:
            client.log_metric(run_id, "best_value", float(results.best_value))
        return
    objective = Objective(str(config.get("objective", Objective.best_accuracy)))
    minimize = objective is Objective.rounds_to_target
    scored = []
    for run in children:
        if run.info.status != "FINISHED":
            continue
        value = _run_objective(run, objective)
        if value is not None:
            scored.append((value, run))
    if not scored:
        return
    value, best = (min if minimize else max)(scored, key=lambda pair: pair[0])
    tracker.set_tags({"best.run_id": best.info.run_id, "best.job": best.info.run_name or ""})
    client.log_metric(run_id, "best_value", float(value))


def _run_objective(run, objective: Objective) -> float | None:
    """``objective_value`` of a finished run, from what it recorded in MLflow."""
    metrics = run.data.metrics
    final = metrics.get("eval/accuracy")
    if final is None:
        return None
    reached = metrics.get("rounds_to_target")
    recorded = SimpleNamespace(
        final_accuracy=final,
        best_accuracy=metrics.get("eval/best_accuracy", final),
        rounds_to_target=int(reached) if reached is not None else None,
    )
    return objective_value(objective, recorded, int(float(run.data.params.get("rounds", "0"))))


def _say_where_the_logs_are(children: list) -> None:
    """One line per job: its number, name, status and log file (``fedlab.logs``; the file is
    also attached to the job's run)."""
    jobs = sorted(children, key=lambda run: int(run.data.tags.get(JOB_TAG, "0")))
    lines = []
    for run in jobs:
        tags = run.data.tags
        status = run.info.status
        if tags.get("fedlab.pruned_at_round"):
            status += f", pruned at round {tags['fedlab.pruned_at_round']}"
        where = tags.get(LOG_TAG, "no log file")
        lines.append(f"  #{tags.get(JOB_TAG, '?')} {run.info.run_name} ({status}): {where}")
    if lines:
        print("fedlab: the jobs' logs:", *lines, sep="\n", file=sys.stderr)


def _study_figures(tracker, sweeper: DictConfig, out_dir: Path, metric: str | None) -> None:
    """Optuna's own figures of the study, drawn with matplotlib, on the parent run under
    ``report/``: the optimization history, the trials' intermediate values (where a pruned
    trial stops) and the parameters' importances (fANOVA; from two finished trials on). A
    figure Optuna cannot draw from this study is left out, with a line saying why."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    from fedlab.quiet import silence_sweeper_plugins

    study = optuna.load_study(study_name=str(sweeper.study_name), storage=study_storage(sweeper))
    states = [t.state for t in study.trials]
    pruned = sum(s == optuna.trial.TrialState.PRUNED for s in states)
    complete = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
    tracker.set_tags(
        {"fedlab.trials": str(len(states)), "fedlab.trials_pruned": str(pruned),
         "fedlab.trials_complete": str(complete)}
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "optuna_history.png": optuna_plots.plot_optimization_history,
        "optuna_intermediate_values.png": optuna_plots.plot_intermediate_values,
        "optuna_importances.png": optuna_plots.plot_param_importances,
    }
    for name, draw in figures.items():
        # Optuna's figures set matplotlib's style (ggplot) for the whole process: undone after.
        with matplotlib.rc_context(), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            silence_sweeper_plugins()
            try:
                ax = draw(study)
            except (ValueError, RuntimeError) as err:  # too few finished trials, ...
                print(f"fedlab: no {name} for this study: {err}", file=sys.stderr)
                continue
            if name == "optuna_intermediate_values.png":
                ax.set_xlabel("communication round")
                ax.set_ylabel(metric or "intermediate value")
            figure = ax.figure
            figure.set_size_inches(8, 5)
            figure.savefig(out_dir / name, dpi=120, bbox_inches="tight")
            plt.close(figure)
        for warning in said:  # Optuna marks its matplotlib figures experimental, each call
            if not issubclass(warning.category, optuna.exceptions.ExperimentalWarning):
                print(f"fedlab: {name}: {warning.message}", file=sys.stderr)
        tracker.client.log_artifact(tracker.run_id, str(out_dir / name), artifact_path="report")


def _write_report(tracker, sweep_dir: Path) -> None:
    """The sweep's comparison (figure and table), attached to the parent run."""
    from fedlab import report

    report.report_sweep(tracker, sweep_dir / "report")
