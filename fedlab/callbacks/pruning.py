"""Pruning in an Optuna search: each trial reports its evaluated metric after every round it is
logged, and stops early when the study's pruner says so.

Hydra's Optuna sweeper runs each trial as a job and never hands the job its trial (it creates
the study with no pruner: hydra#1954). So the job finds its trial itself: the sweeper's storage
and study name are in the job's Hydra config, and ``fedlab.sweep.optuna_trial_number`` finds its
trial number there (``TrialLink``). This callback opens the study from that storage with the
pruner ``callbacks.pruning`` names, reports ``metric`` at each round as the trial's intermediate
value (step = round; round 0 is the initial model, which every trial shares, and is not
reported), and asks ``should_prune()``. Every job builds its pruner from the same config, which
the sweep's driver checks once and records on the sweep's parent run (``fedlab.sweep``): the
jobs and the driver agree on it because they read it from the same place.

When the pruner says so, the run stops after that round (``ctx.stop``): its checkpoint, figure
and metrics are kept, and the trial is told PRUNED, which records its last intermediate value
as its value (Optuna's own rule for pruned trials, ``Study.tell``). The MLflow run ends
FINISHED, tagged ``fedlab.pruned=true`` and ``fedlab.pruned_at_round``, with the reason as its
description: it stopped on purpose, as ``stop_at_target`` stops a run, and its metrics up to
that round are whole (KILLED is for a run interrupted from outside, FAILED for an error).
The sweeper, which would tell the trial COMPLETE once the job returns, leaves a trial that is
already PRUNED as it is (``fedlab.sweep.let_jobs_prune_their_trials``).

Pruners (``callbacks.pruning.pruner``), with their keyword arguments in ``pruner_args``:
``median`` (the default), ``percentile``, ``successive_halving``, ``threshold``, and ``none``.
Hyperband is left out: its brackets need the sampler of the sweeper's study to know them.
A pruner compares intermediate values in the study's direction, so ``metric`` must improve the
way the objective does: ``eval/accuracy`` for the accuracy objectives (maximized), a loss
(``eval/loss``) for ``rounds_to_target`` (minimized).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

from fedlab.callbacks.base import CALLBACKS, Callback, CallbackConfig
from fedlab.errors import ConfigError

log = logging.getLogger(__name__)

# Optuna's pruners by the name a config gives them.
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
}

PRUNED_TAG = "fedlab.pruned"
PRUNED_AT_TAG = "fedlab.pruned_at_round"


@dataclass(frozen=True)
class TrialLink:
    """Where a job's Optuna trial is: the study's storage (a URL or a storage object), its
    name, and the trial's number."""

    storage: Any
    study_name: str
    number: int


def build_pruner(name: str, args: dict[str, Any], where: str = "callbacks.pruning") -> Any:
    """Optuna's pruner ``name`` with keyword arguments ``args``; ConfigError in one line for
    an unknown name, an argument the pruner does not take, or a value it refuses."""
    if name not in PRUNERS:
        raise ConfigError(f"{where}.pruner={name!r} is unknown; allowed: {', '.join(PRUNERS)}")
    import optuna

    cls = getattr(optuna.pruners, PRUNERS[name])
    takes = [p for p in inspect.signature(cls).parameters if p != "self"]
    for key in args:
        if key not in takes:
            allowed = ", ".join(takes) or "none"
            raise ConfigError(
                f"{where}.pruner_args.{key} is not an argument of the {name} pruner "
                f"(optuna.pruners.{cls.__name__}); allowed: {allowed}"
            )
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        message = " ".join(str(err).split())
        raise ConfigError(
            f"{where}.pruner_args={dict(args)} is invalid for the {name} pruner: {message}"
        ) from None


def describe_pruner(name: str, args: dict[str, Any]) -> str:
    """``median(n_startup_trials=5)``: the pruner as the sweep's parent run records it."""
    given = ", ".join(f"{k}={v}" for k, v in sorted(args.items()))
    return f"{name}({given})"


def metric_sense(metric: str) -> str | None:
    """``maximize`` for a metric that rises as a run improves (an accuracy), ``minimize`` for
    one that falls (a loss); None: not known (a metric of the user's own)."""
    if "accuracy" in metric:
        return "maximize"
    if "loss" in metric:
        return "minimize"
    return None


@dataclass
class PruningConfig(CallbackConfig):
    pruner: str = "median"  # none | median | percentile | successive_halving | threshold
    pruner_args: dict[str, Any] = field(default_factory=dict)  # the Optuna pruner's arguments
    metric: str = "eval/accuracy"  # reported to the trial at each round it is logged

    def validate(self, group: str) -> None:
        build_pruner(self.pruner, dict(self.pruner_args), group)
        if not self.metric.strip():
            raise ConfigError(f"{group}.metric='' is invalid; allowed: a metric the run logs")


@CALLBACKS.register("pruning")
class PruningCallback(Callback):
    """Reports ``metric`` to the run's Optuna trial and stops the run when it is pruned."""

    Config = PruningConfig
    order = 85  # after tracking (the round is logged), before the checkpoint of the last round

    def __init__(self, link: TrialLink, pruner_name: str, pruner_args: dict, metric: str):
        self.link = link
        self.pruner_name = pruner_name
        self.pruner_args = dict(pruner_args)
        self.metric = metric
        self.study = None
        self.trial = None
        self.reported = False  # whether the metric was ever seen
        self.checked = False  # whether its absence has been looked for
        self.pruned_at: int | None = None

    @classmethod
    def check(cls, cfg: PruningConfig, run: Any) -> None:
        """The metric must improve the way the objective does: a pruner compares intermediate
        values in the study's direction, so an accuracy in a minimized search would prune the
        best trials."""
        objective = getattr(run.objective, "value", run.objective)
        direction = "minimize" if objective == "rounds_to_target" else "maximize"
        sense = metric_sense(cfg.metric)
        if sense is not None and sense != direction:
            better = "eval/loss" if direction == "minimize" else "eval/accuracy"
            moves = "rises" if sense == "maximize" else "falls"
            raise ConfigError(
                f"callbacks.pruning.metric={cfg.metric} {moves} as a run improves, and "
                f"objective={objective} is {direction}d: the pruner would stop the best "
                f"trials; allowed: a metric that moves as the objective does ({better})"
            )

    @classmethod
    def create(cls, cfg: PruningConfig, run) -> PruningCallback | None:
        link = getattr(run, "trial", None)
        if link is None:  # not a job of an Optuna search: nothing to prune against
            log.info("callbacks.pruning: not an Optuna search's trial, so nothing to prune")
            return None
        return cls(link, cfg.pruner, dict(cfg.pruner_args), cfg.metric)

    def on_train_begin(self, ctx) -> None:
        import optuna

        storage = optuna.storages.get_storage(self.link.storage)
        self.study = optuna.load_study(
            study_name=self.link.study_name,
            storage=storage,
            pruner=build_pruner(self.pruner_name, self.pruner_args),
            sampler=optuna.samplers.RandomSampler(),  # never asked to sample here
        )
        study_id = storage.get_study_id_from_name(self.link.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.link.number)
        self.trial = optuna.trial.Trial(self.study, trial_id)
        if ctx.tracker.run_id is not None:  # the link the entry point makes after a whole run
            storage.set_trial_user_attr(trial_id, "mlflow_run_id", ctx.tracker.run_id)
        log.info(
            "pruning: reporting %s to Optuna trial %d of study %s (%s pruner)",
            self.metric,
            self.link.number,
            self.link.study_name,
            describe_pruner(self.pruner_name, self.pruner_args),
        )

    def after_round(self, ctx, record) -> None:
        if self.trial is None:
            return
        value = record.metrics.get(self.metric)
        if value is None:
            self._check_logged(ctx, record)
            return
        self.reported = True
        self.trial.report(float(value), step=record.round)
        if record.round < ctx.cfg.rounds and not ctx.stop and self.trial.should_prune():
            self.pruned_at = record.round
            ctx.stop = True
            ctx.stop_reason = (
                f"pruned by Optuna's {self.pruner_name} pruner at round {record.round} of "
                f"{ctx.cfg.rounds} (trial {self.link.number}: {self.metric} {value:.4f})"
            )
            log.info("%s", ctx.stop_reason)

    def _check_logged(self, ctx, record) -> None:
        """At the first evaluated round, every metric a run logs has been logged once: one
        that has not is not logged by this run (a typo, or a metric of an option not chosen).
        The trial then reports nothing and is never pruned; the run goes on, and says so."""
        if self.checked or self.reported or "eval/accuracy" not in record.metrics:
            return
        self.checked = True
        logged = ", ".join(sorted(record.metrics))
        reason = (
            f"callbacks.pruning.metric={self.metric} is not a metric this run logs, so trial "
            f"{self.link.number} reports nothing and is never pruned; allowed: {logged}"
        )
        log.warning("%s", reason)
        ctx.tracker.set_tags({"fedlab.pruning": f"off: {reason}"})

    def on_train_end(self, ctx) -> None:
        if self.pruned_at is None:
            return
        import optuna

        self.study.tell(self.link.number, state=optuna.trial.TrialState.PRUNED)
        ctx.tracker.set_tags(
            {
                PRUNED_TAG: "true",
                PRUNED_AT_TAG: str(self.pruned_at),
                "mlflow.note.content": ctx.stop_reason,
            }
        )
