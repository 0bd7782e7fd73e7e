"""One federated run built from its config, and run to the end: fedlab's composition root.

``fedlab.validation`` makes the checked config; ``run`` builds everything a run is made of from
it, in this order, and hands the parts to the round loop (``fedlab.core.loop.train``):

1. the data (``federated_data``: load locally, partition over the clients, poison the malicious
   clients' examples if the attack does: ``fedlab.attacks.poisoned``);
2. the round's parts (``round_parts``: model, optimizers, algorithm, aggregator wrapped by the
   privacy option, compressor) and the engine that computes them (``fedlab.backends``), with the
   placement of a round's clients;
3. the checkpoint to resume from, and the per-client state store;
4. the callbacks (``fedlab.callbacks``: evaluation, communication, tracking, checkpoints, ...);
5. the tracker's run (``fedlab.tracking``), ended FINISHED, FAILED with the reason, or KILLED.

The entry point (``fedlab.__main__``) and the Python API (``fedlab.api``) both call ``run``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from fedlab import checkpoint, logs
from fedlab.backends import RoundParts
from fedlab.config import LocalOrder, RunConfig, as_tree, run_params
from fedlab.core.client_state import ClientStateStore
from fedlab.core.loop import train
from fedlab.core.sampling import ClientSampler, local_order
from fedlab.core.types import ClientWork, Progress, TrainingContext
from fedlab.errors import TERMINATION_REQUESTED, Terminated
from fedlab.quiet import silence_frameworks
from fedlab.tracking import NullTracker, Tracker, lineage

log = logging.getLogger(__name__)

# The tag of a run under attack whose global model diverged: "round N: why" (fedlab.report).
DIVERGED_TAG = "fedlab.diverged"


@dataclass
class RunResult:
    """What a run produced; ``history`` maps every metric it logged (``eval/accuracy``,
    ``train/loss``, ...) to its ``(round, value)`` pairs, round by round."""

    rounds: int
    final_accuracy: float
    best_accuracy: float
    rounds_to_target: int | None
    total_mb: float
    wall_s: float
    history: dict[str, list[tuple[int, float]]]
    location: str | None
    epsilon: float | None = None  # the privacy spent (fedlab.privacy), at delta
    delta: float | None = None
    # Under attack, where and why the global model diverged (the run ended there), else None.
    diverged: str | None = None
    stopped: str | None = None  # why it stopped before its last round (pruned), if a callback said

    def summary(self) -> str:
        """The closing paragraph printed at the end of a run."""
        target = (
            f"reached the target at round {self.rounds_to_target}"
            if self.rounds_to_target is not None
            else "did not reach the target"
        )
        where = f" Recorded as {self.location}." if self.location else ""
        if self.diverged:
            where = f" Under attack, training diverged at {self.diverged}.{where}"
        if self.stopped:
            where = f" Stopped early: {self.stopped}.{where}"
        spent = ""
        if self.epsilon is not None:
            spent = f"; privacy spent ε={self.epsilon:.4g} at δ={self.delta:g}"
        return (
            f"After {self.rounds} rounds: final test accuracy {self.final_accuracy:.4f}, "
            f"best {self.best_accuracy:.4f}; {target}; {self.total_mb:,.1f} MB communicated"
            f"{spent}; wall time {self.wall_s:.1f} s.{where}"
        )


class MetricLog:
    """A tracker that also keeps every metric logged through it, for ``RunResult.history``
    (which works with ``tracking=none`` too); everything else goes to ``tracker``."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.logged: dict[str, dict[int, float]] = {}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.tracker.log_metrics(metrics, step)
        for key, value in metrics.items():
            self.logged.setdefault(key, {})[step] = float(value)

    def history(self, run_id: str | None) -> dict[str, list[tuple[int, float]]]:
        """What the store holds for the run (earlier invocations of a resumed run), with what
        this process logged over it."""
        try:
            stored = self.tracker.metric_history(run_id)
        except Exception:  # a store that lost the run, or cannot be read: what was logged here
            stored = {}
        merged = {key: dict(points) for key, points in stored.items()}
        for key, points in self.logged.items():
            merged.setdefault(key, {}).update(points)
        return {key: sorted(points.items()) for key, points in sorted(merged.items())}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)


def algorithm_name(cfg: RunConfig) -> str:
    """The whole recipe in the papers' names: the algorithm, what the server optimizer makes of
    it (FedAvg, FedAvgM, FedAdam, ... Reddi et al. 2020) and the aggregator if not the mean."""
    from fedlab.aggregators import AGGREGATORS
    from fedlab.algorithms import ALGORITHMS
    from fedlab.optimizers import OPTIMIZERS
    from fedlab.privacy import PRIVACY

    server = OPTIMIZERS.of(cfg.server_optimizer).server_recipe
    name = ALGORITHMS.of(cfg.algorithm).recipe_name(cfg.algorithm, cfg, server)
    name = PRIVACY.of(cfg.privacy).recipe_name(name)
    label = AGGREGATORS.of(cfg.aggregator).label
    return f"{name}, {label}" if label else name


def round_parts(
    cfg: RunConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    target_shape: tuple[int, ...] = (),
    pad_label: int | None = None,
) -> RoundParts:
    """The parts ``cfg`` chooses, for a dataset of this shape and classes."""
    from fedlab.aggregators import build_aggregator
    from fedlab.algorithms import build_algorithm
    from fedlab.attacks import build_attack
    from fedlab.compression import build_compressor
    from fedlab.models import MODELS, model_options
    from fedlab.optimizers import build_optimizer
    from fedlab.privacy import build_privacy

    client = build_optimizer(cfg.client_optimizer)
    privacy = build_privacy(cfg)
    model = MODELS.of(cfg.model)
    return RoundParts(
        make_model=functools.partial(
            model.build, tuple(input_shape), int(num_classes), **model_options(cfg.model)
        ),
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        client_optimizer=client,
        server_optimizer=build_optimizer(cfg.server_optimizer),
        algorithm=build_algorithm(cfg.algorithm, client, cfg.num_clients),
        # The privacy option takes over the aggregation (DP-FedAvg) or leaves it as it is.
        aggregator=privacy.wrap(build_aggregator(cfg.aggregator)),
        privacy=privacy,
        compressor=build_compressor(cfg.compression, cfg.seed),
        target_shape=tuple(target_shape),
        pad_label=pad_label,
        seed=cfg.seed,
        attack=build_attack(cfg),
    )


def client_work_of(cfg: RunConfig, dataset: Any, store: ClientStateStore):
    """``client_work(client_id, round_num)``: what a sampled client trains on in a round, its
    examples in the order ``cfg.local_order`` says (``fedlab.core.sampling.local_order``, or the
    order its partition dealt them, every epoch), with the state it kept."""

    def client_work(client_id: int, round_num: int) -> ClientWork:
        x, y = dataset.client_data(client_id)
        if cfg.local_order is LocalOrder.stored:
            order = np.tile(dataset.stored_order(client_id), (cfg.E, 1))
        else:
            order = local_order(len(x), cfg.E, cfg.seed, round_num, client_id)
        return ClientWork(x, y, order, cfg.B, client_id, store.get(client_id), round_num)

    return client_work


def build_callbacks(cfg: RunConfig, setup: Any) -> list[Any]:
    """The run's callbacks (``cfg.callbacks``, in the config's order), each created for the run,
    sorted by their ``order`` (a stable sort: ties keep the config's order)."""
    from fedlab.callbacks import CALLBACKS

    created = []
    for chosen in cfg.callbacks.values():
        callback = CALLBACKS.of(chosen).create(chosen, setup)
        if callback is not None:
            created.append(callback)
    return sorted(created, key=lambda callback: callback.order)


def federated_data(cfg: RunConfig) -> Any:
    """The run's clients' data as they train on it: the dataset loaded and partitioned
    (``fedlab.data.federate``), with the malicious clients' examples poisoned if the attack
    does (``fedlab.attacks.poisoned``). Every process that trains clients gets its data here:
    this one (``run``) and each Ray actor (``dataset_parts``)."""
    from fedlab.attacks import build_attack, poisoned
    from fedlab.data import federate

    return poisoned(federate(cfg), build_attack(cfg))


def dataset_parts(cfg: RunConfig) -> tuple[Any, RoundParts]:
    """The run's federated dataset and the parts built for it: what a process that trains a
    run's clients needs (this one, or a Ray actor: ``fedlab.backends.fast.placement``)."""
    dataset = federated_data(cfg)
    parts = round_parts(
        cfg,
        dataset.input_shape,
        dataset.num_classes,
        target_shape=tuple(dataset.y_train.shape[1:]),
        pad_label=dataset.pad_label,
    )
    return dataset, parts


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(
    cfg: RunConfig,
    *,
    output_dir: Path,
    tracker: Tracker | None = None,
    run_name: str = "fedlab",
    overrides: str = "",
    progress: bool = True,
    checkpoint_dir: Path | None = None,
    tags: dict[str, str] | None = None,
    log_file: Path | None = None,
    trial: Any = None,
) -> RunResult:
    """Run ``cfg`` to the end, continuing from its checkpoint if there is one.

    The tracker's run ends FINISHED, FAILED (with the reason) or KILLED (Ctrl-C, SIGTERM).
    ``checkpoint_dir`` is where checkpoints go when ``cfg.checkpoint_dir`` is null (default:
    ``output_dir/checkpoints``; the CLI passes ``./checkpoints`` so that re-running a command
    finds them). ``tags`` are added to the run's own (a sweep's job adds its parent run).
    ``log_file``: the job's log (``fedlab.logs``), named in a tag and attached to the run when
    it ends, however it ends. ``trial``: the job's Optuna trial in a search
    (``fedlab.callbacks.pruning.TrialLink``), which the pruning callback reports to.
    """
    from fedlab.privacy import build_privacy

    started = time.monotonic()
    silence_frameworks()
    tracker = MetricLog(tracker or NullTracker())
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_key = checkpoint.config_key(cfg)
    log.info("config key %s; files in %s", ckpt_key, output_dir)
    ckpt_path = checkpoint.checkpoint_path(
        cfg, checkpoint_dir or output_dir / "checkpoints", ckpt_key, tracker.store
    )
    if cfg.checkpoint_every:
        # An unusable directory fails now, before seconds of imports and data loading.
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if "tensorflow" not in sys.modules:
        with logs.step("importing TensorFlow"):
            import tensorflow  # noqa: F401
    from fedlab import hardware

    worker_env = hardware.configure(cfg.hardware, cfg.engine)
    with logs.step(f"loading {cfg.dataset.name} and partitioning it ({cfg.partition.name})"):
        dataset = federated_data(cfg)
    log.info("data: %s", describe_data(dataset))
    resumed = _checkpoint_to_resume(cfg, tracker, ckpt_path, ckpt_key) if cfg.resume else None

    privacy = build_privacy(cfg)

    def result(done: Progress, stopped: str | None = None) -> RunResult:
        finished = RunResult(
            stopped=stopped,
            epsilon=privacy.epsilon(done.round),
            delta=privacy.delta,
            rounds=done.round,
            final_accuracy=done.history[max(done.history)],
            best_accuracy=max(done.history.values()),
            rounds_to_target=done.rounds_to_target,
            total_mb=done.total_mb,
            wall_s=time.monotonic() - started,
            history=tracker.history(tracker.run_id or (resumed.run_id if resumed else None)),
            location=tracker.location,
            diverged=done.diverged,
        )
        log.info("%s", finished.summary(), extra=logs.FILE_ONLY)  # the CLI prints it
        return finished

    reached_target = cfg.stop_at_target and resumed is not None and resumed.rounds_to_target
    if resumed is not None and (resumed.round >= cfg.rounds or reached_target):
        log.info("%s is at round %d: nothing left to run", ckpt_path, resumed.round)
        tracker.adopt(resumed.run_id)  # so that the result says where the run is
        return result(_progress_of(resumed))

    config_yaml = output_dir / "config.yaml"
    config_yaml.write_text(OmegaConf.to_yaml(as_tree(cfg)))
    commit = git_commit()
    try:
        # Inside the try: a run that fails while its params are logged must not stay RUNNING.
        if resumed is not None:
            logged_up_to = tracker.resume(resumed.run_id)
            log.info("resuming from %s at round %d", ckpt_path, resumed.round)
        else:
            tracker.start(
                run_name,
                params=run_params(cfg),
                tags={
                    "partition": str(cfg.partition.name),
                    "model": cfg.model.name,
                    "algorithm": algorithm_name(cfg),
                    "engine": cfg.engine.value,
                    "git_commit": commit,
                    "mlflow.source.git.commit": commit,
                    **lineage.source_tags(),
                    lineage.CONFIGURATION_TAG: lineage.configuration_name(cfg, algorithm_name(cfg)),
                    "overrides": overrides,
                    **({"fedlab.log_file": str(log_file)} if log_file is not None else {}),
                    **(tags or {}),
                },
            )
            tracker.log_artifact(config_yaml)
            if tracker.run_id is not None:  # hashing the data costs a second: only to record
                tracker.log_datasets(lineage.dataset_records(cfg, dataset))
            logged_up_to = -1
        if tracker.location:
            log.info("tracking: %s", tracker.location)
        done, stopped = _train(
            cfg, dataset, worker_env, output_dir, tracker, progress,
            ckpt_path=ckpt_path, ckpt_key=ckpt_key, resumed=resumed, logged_up_to=logged_up_to,
            trial=trial,
        )  # fmt: skip
    except KeyboardInterrupt:
        _finish(tracker, log_file, "KILLED", "interrupted by Ctrl-C or SIGTERM")
        raise
    except BaseException as err:
        if TERMINATION_REQUESTED.is_set():  # SIGTERM, surfacing as another error (errors.py)
            _finish(tracker, log_file, "KILLED", "interrupted by SIGTERM")
            raise Terminated() from err
        _finish(tracker, log_file, "FAILED", f"{type(err).__name__}: {err}")
        raise
    if done.diverged:
        # A result, not a failure: FINISHED keeps the run in the report, which shows the tag.
        tracker.set_tags({DIVERGED_TAG: done.diverged})
    finished = result(done, stopped)
    _finish(tracker, log_file, "FINISHED")
    return finished


def _finish(tracker: Tracker, log_file: Path | None, status: str, reason: str | None = None):
    """End the tracker's run as ``status``, with the job's log attached (``fedlab.logs``)."""
    if reason:
        log.info("run %s: %s", status, reason, extra=logs.FILE_ONLY)  # the CLI says it
    if log_file is not None and log_file.is_file() and tracker.run_id is not None:
        try:
            tracker.log_artifact(log_file)
        except Exception as err:  # the log is a copy: the run's end must not depend on it
            log.warning("could not attach %s to the run: %s", log_file, err)
    tracker.finish(status, reason)


def _checkpoint_to_resume(
    cfg: RunConfig, tracker: Tracker, path: Path, key: str
) -> checkpoint.Checkpoint | None:
    """The checkpoint at ``path`` (scoped by the tracker's store, ``fedlab.checkpoint``), if
    it continues a run this store holds; None to start afresh.

    A checkpoint from before checkpoints were scoped by store (``run-<key>.npz``) is taken over
    when this store holds its run. One whose run the store no longer holds (deleted in the
    MLflow UI) is left for this run to overwrite, with a warning: the run is recorded again."""
    legacy = checkpoint.checkpoint_path(cfg, path.parent, key)
    if not path.exists() and legacy.exists():
        found = checkpoint.load(legacy, key)
        if found is not None and tracker.holds(found.run_id):
            clients = checkpoint.client_state_dir(legacy)
            if clients.exists():
                clients.rename(checkpoint.client_state_dir(path))
            legacy.rename(path)
    saved = checkpoint.load(path, key)
    if saved is not None and not tracker.holds(saved.run_id):
        log.warning(
            "%s continues run %s, which %s does not hold (deleted?): starting the run afresh",
            path,
            saved.run_id,
            tracker.store,
        )
        return None
    return saved


def describe_run(cfg: RunConfig) -> str:
    """The run's key facts in one line, in the paper's terms."""
    batch = "∞" if cfg.B is None else cfg.B
    return (
        f"{algorithm_name(cfg)} on {cfg.dataset.name}, model {cfg.model.name}, partition "
        f"{cfg.partition.name} over K={cfg.num_clients} clients, C={cfg.C:g} "
        f"({cfg.clients_per_round} a round), E={cfg.E}, B={batch}, {cfg.rounds} rounds, "
        f"seed {cfg.seed}, engine {cfg.engine.value}"
    )


def describe_data(dataset: Any) -> str:
    """What was loaded, and from where, in one line."""
    test = f", {len(dataset.y_test):,} test examples" if dataset.y_test is not None else ""
    source = f"; source: {dataset.source}" if getattr(dataset, "source", "") else ""
    return (
        f"{dataset.name}: {len(dataset.y_train):,} training examples over "
        f"{dataset.num_clients} clients{test}{source}"
    )


def _progress_of(saved: checkpoint.Checkpoint) -> Progress:
    return Progress(
        round=saved.round,
        history=dict(saved.history),
        rounds_to_target=saved.rounds_to_target,
        total_mb=saved.total_mb,
    )


def _train(
    cfg: RunConfig,
    dataset,
    worker_env: dict[str, str],
    output_dir: Path,
    tracker: Tracker,
    progress: bool,
    *,
    ckpt_path: Path,
    ckpt_key: str,
    resumed: checkpoint.Checkpoint | None,
    logged_up_to: int,
    trial: Any = None,
) -> tuple[Progress, str | None]:
    """Build the engine and the callbacks, and run the rounds from the start or ``resumed``;
    what the run reached, and why a callback stopped it early (None: it did not say)."""
    # TensorFlow (slow to import) only once the inputs are known to be good.
    import tensorflow as tf

    from fedlab.backends import build_engine, engine_runtime, open_placement
    from fedlab.callbacks import RunSetup

    tf.keras.utils.set_random_seed(cfg.seed)
    building = time.monotonic()
    log.info("building the model and engine=%s ...", cfg.engine.value)
    parts = round_parts(
        cfg,
        dataset.input_shape,
        dataset.num_classes,
        target_shape=tuple(dataset.y_train.shape[1:]),
        pad_label=dataset.pad_label,
    )
    initial_weights = parts.make_model().get_weights()
    sampler = ClientSampler(cfg.client_sampling, cfg.num_clients, cfg.clients_per_round, cfg.seed)
    store = ClientStateStore(
        checkpoint.client_state_dir(ckpt_path) if cfg.checkpoint_every else None,
        resumed.client_states if resumed is not None else None,
    )

    client_work = client_work_of(cfg, dataset, store)

    with contextlib.ExitStack() as stack:
        # The order of a run before placements existed, which engine=tff needs: the engine is
        # built first, then the evaluation's models (built before it, engine=tff runs failed in
        # Keras: "Layer or Model is in an invalid state"), and only then TFF's worker starts;
        # leaving, the worker stops first. With placement=ray the actors come up before the
        # engine that sends them work (engine=fast: its runtime is empty).
        placement = stack.enter_context(open_placement(cfg, dataset, dataset_parts))
        if placement is not None:  # which nodes the actors live on
            tracker.set_tags(placement.tags())
        engine = build_engine(cfg.engine, dataclasses.replace(parts, placement=placement))
        if hasattr(engine, "close"):  # its threads, or its placement's actors
            stack.callback(engine.close)
        setup = RunSetup(
            cfg=cfg,
            dataset=dataset,
            parts=parts,
            output_dir=output_dir,
            tracker=tracker,
            checkpoint_path=ckpt_path,
            checkpoint_key=ckpt_key,
            client_states=store,
            logged_up_to=logged_up_to,
            progress=progress,
            description=f"{algorithm_name(cfg)} {cfg.partition.name}",
            trial=trial,
        )
        callbacks = build_callbacks(cfg, setup)
        stack.enter_context(engine_runtime(cfg.engine, worker_env, output_dir / "tff_worker.log"))
        log.info(
            "engine=%s ready in %.1f s: %s, %s parameters",
            cfg.engine.value,
            time.monotonic() - building,
            cfg.model.name,
            f"{sum(w.size for w in initial_weights):,}",
        )
        if resumed is None:
            state = engine.initialize(initial_weights)
        else:
            try:
                state = engine.state_from_arrays(resumed.state)
            except ValueError as err:
                raise checkpoint.CheckpointError(
                    f"checkpoint {ckpt_path} does not fit this model and optimizers ({err}); "
                    "delete it or run with resume=false"
                ) from None
        ctx = TrainingContext(
            cfg=cfg,
            engine=engine,
            state=state,
            progress=_progress_of(resumed) if resumed is not None else Progress(),
            tracker=tracker,
            algorithm=parts.algorithm,
            model_bytes=sum(w.nbytes for w in initial_weights),
        )
        under_attack = parts.attack is not None and parts.attack.active
        done = train(
            ctx, callbacks, sampler.sample, client_work, cfg.rounds, store,
            diverged_is_result=under_attack,
        )  # fmt: skip
        return done, ctx.stop_reason
