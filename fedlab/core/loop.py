"""One federated run: data → clients → rounds → callbacks → tracker.

This is the round loop of McMahan et al. 2017, Algorithm 1, kept apart from the algorithm
(``fedlab.algorithms``) and from the engine that computes it (``fedlab.backends``), as in fedjax's
``federated_experiment``: each round it samples the clients, hands their work to the engine, and
passes what came back to the callbacks (``fedlab.callbacks``: communication, evaluation, target,
timing, tracking, checkpoint, progress). ``run`` sets all of this up from a ``RunConfig``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from fedlab import checkpoint, hardware
from fedlab.callbacks.base import Callback, Progress, RoundRecord, TrainingContext
from fedlab.config import RunConfig
from fedlab.core.client_state import ClientStateStore
from fedlab.core.sampling import ClientSampler, local_order
from fedlab.core.types import ClientWork, RoundOutput
from fedlab.errors import TERMINATION_REQUESTED, DivergedError, Terminated
from fedlab.quiet import silence_frameworks
from fedlab.tracking import NullTracker, Tracker, flatten


@dataclass
class RunResult:
    """What a run produced; ``history`` maps each evaluated round to its test accuracy."""

    rounds: int
    final_accuracy: float
    best_accuracy: float
    rounds_to_target: int | None
    total_mb: float
    wall_s: float
    history: dict[int, float]
    location: str | None
    epsilon: float | None = None  # the privacy spent (fedlab.privacy), at delta
    delta: float | None = None

    def summary(self) -> str:
        """The closing paragraph printed at the end of a run."""
        target = (
            f"reached the target at round {self.rounds_to_target}"
            if self.rounds_to_target is not None
            else "did not reach the target"
        )
        where = f" Recorded as {self.location}." if self.location else ""
        spent = ""
        if self.epsilon is not None:
            spent = f"; privacy spent ε={self.epsilon:.4g} at δ={self.delta:g}"
        return (
            f"After {self.rounds} rounds: final test accuracy {self.final_accuracy:.4f}, "
            f"best {self.best_accuracy:.4f}; {target}; {self.total_mb:,.1f} MB communicated"
            f"{spent}; wall time {self.wall_s:.1f} s.{where}"
        )


def algorithm_name(cfg: RunConfig) -> str:
    """The whole recipe in the papers' names: the algorithm, what the server optimizer makes of
    it (FedAvg, FedAvgM, FedAdam, ... Reddi et al. 2020) and the aggregator if not the mean."""
    from fedlab.aggregators import AGGREGATORS
    from fedlab.algorithms import ALGORITHMS
    from fedlab.optimizers import OPTIMIZERS
    from fedlab.privacy import PRIVACY

    server = OPTIMIZERS.get(str(cfg.server_optimizer.name)).server_recipe
    name = ALGORITHMS.get(cfg.algorithm.name).recipe_name(cfg.algorithm, cfg, server)
    name = PRIVACY.get(cfg.privacy.name).recipe_name(name)
    label = AGGREGATORS.get(cfg.aggregator.name).label
    return f"{name}, {label}" if label else name


def check_diverged(out: RoundOutput, round_num: int) -> None:
    """Stop on divergence, which TFF would otherwise hide (see ``RoundOutput``)."""
    if not math.isfinite(out.train_loss):
        why = f"train loss is {out.train_loss}"
    elif out.examples_trained == 0:
        why = "every client's update was not finite"
    elif out.update_skipped:
        why = "the mean client update was not finite"
    else:
        return
    raise DivergedError(
        f"training diverged at round {round_num}: {why}; "
        "lower the learning rates (client_optimizer.lr, server_optimizer.lr)"
    )


def train(
    ctx: TrainingContext,
    callbacks: list[Callback],
    sample,
    client_work,
    rounds: int,
    client_states: ClientStateStore,
) -> Progress:
    """The rounds from ``ctx.progress.round + 1`` to ``rounds`` (or until a callback stops)."""
    try:
        for callback in callbacks:
            callback.on_train_begin(ctx)
        try:
            for round_num in range(ctx.progress.round + 1, rounds + 1):
                started = time.monotonic()
                work = [client_work(int(c), round_num) for c in sample(round_num)]
                out = ctx.engine.next(ctx.state, work)
                check_diverged(out, round_num)
                record = RoundRecord(
                    round=round_num,
                    output=out,
                    clients=len(work),
                    progress=dataclasses.replace(ctx.progress, round=round_num),
                    metrics={
                        "train/loss": out.train_loss,
                        "train/accuracy": out.train_accuracy,
                        "train/examples_dropped": out.examples_expected - out.examples_trained,
                        **{f"algorithm/{k}": v for k, v in out.algorithm_metrics.items()},
                        **{f"aggregator/{k}": v for k, v in out.aggregator_metrics.items()},
                    },
                    started=started,
                )
                for callback in callbacks:
                    callback.measure(ctx, record)
                # The round is done: only now does it become the run's state.
                ctx.state, ctx.progress = out.state, record.progress
                client_states.update(out.client_states, round_num)
                for callback in callbacks:
                    callback.after_round(ctx, record)
                if ctx.stop:
                    break
        except KeyboardInterrupt:
            for callback in callbacks:
                callback.on_interrupt(ctx)
            raise
        for callback in callbacks:
            callback.on_train_end(ctx)
    finally:
        for callback in callbacks:
            callback.close()
    return ctx.progress


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
) -> RunResult:
    """Run ``cfg`` to the end, continuing from its checkpoint if there is one.

    The tracker's run ends FINISHED, FAILED (with the reason) or KILLED (Ctrl-C, SIGTERM).
    ``checkpoint_dir`` is where checkpoints go when ``cfg.checkpoint_dir`` is null (default:
    ``output_dir/checkpoints``; the CLI passes ``./checkpoints`` so that re-running a command
    finds them). ``tags`` are added to the run's own (a sweep's job adds its parent run).
    """
    from fedlab.data import federate
    from fedlab.privacy import build_privacy

    started = time.monotonic()
    silence_frameworks()
    tracker = tracker or NullTracker()
    output_dir.mkdir(parents=True, exist_ok=True)
    worker_env = hardware.configure(cfg.hardware, cfg.engine)
    dataset = federate(cfg)
    ckpt_key = checkpoint.config_key(cfg)
    ckpt_path = checkpoint.checkpoint_path(
        cfg, checkpoint_dir or output_dir / "checkpoints", ckpt_key
    )
    if cfg.checkpoint_every:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)  # an unusable directory fails now
    resumed = checkpoint.load(ckpt_path, ckpt_key) if cfg.resume else None

    privacy = build_privacy(cfg)

    def result(done: Progress) -> RunResult:
        return RunResult(
            epsilon=privacy.epsilon(done.round),
            delta=privacy.delta,
            rounds=done.round,
            final_accuracy=done.history[max(done.history)],
            best_accuracy=max(done.history.values()),
            rounds_to_target=done.rounds_to_target,
            total_mb=done.total_mb,
            wall_s=time.monotonic() - started,
            history=done.history,
            location=tracker.location,
        )

    reached_target = cfg.stop_at_target and resumed is not None and resumed.rounds_to_target
    if resumed is not None and (resumed.round >= cfg.rounds or reached_target):
        print(f"fedlab: {ckpt_path} is at round {resumed.round}: nothing left to run")
        return result(_progress_of(resumed))

    config_yaml = output_dir / "config.yaml"
    structured = OmegaConf.structured(cfg)
    config_yaml.write_text(OmegaConf.to_yaml(structured))
    commit = git_commit()
    try:
        # Inside the try: a run that fails while its params are logged must not stay RUNNING.
        if resumed is not None:
            logged_up_to = tracker.resume(resumed.run_id)
        else:
            tracker.start(
                run_name,
                params=flatten(OmegaConf.to_container(structured, enum_to_str=True)),
                tags={
                    "partition": str(cfg.partition.name),
                    "model": cfg.model.name,
                    "algorithm": algorithm_name(cfg),
                    "engine": cfg.engine.value,
                    "git_commit": commit,
                    "mlflow.source.git.commit": commit,
                    "overrides": overrides,
                    **(tags or {}),
                },
            )
            tracker.log_artifact(config_yaml)
            logged_up_to = -1
        done = _train(
            cfg, dataset, worker_env, output_dir, tracker, progress,
            ckpt_path=ckpt_path, ckpt_key=ckpt_key, resumed=resumed, logged_up_to=logged_up_to,
        )  # fmt: skip
    except KeyboardInterrupt:
        tracker.finish("KILLED", "interrupted by Ctrl-C or SIGTERM")
        raise
    except BaseException as err:
        if TERMINATION_REQUESTED.is_set():  # SIGTERM, surfacing as another error (errors.py)
            tracker.finish("KILLED", "interrupted by SIGTERM")
            raise Terminated() from err
        tracker.finish("FAILED", f"{type(err).__name__}: {err}")
        raise
    tracker.finish("FINISHED")
    return result(done)


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
) -> Progress:
    """Build the engine and the callbacks, and run the rounds from the start or ``resumed``."""
    # TensorFlow (slow to import) only once the inputs are known to be good.
    import tensorflow as tf

    from fedlab.backends import build_engine, engine_runtime, open_placement, round_parts
    from fedlab.callbacks import (
        CheckpointCallback,
        CommunicationCallback,
        EvaluationCallback,
        Evaluator,
        FederatedEvaluator,
        PrivacyCallback,
        ProgressCallback,
        TargetCallback,
        TimingCallback,
        TrackingCallback,
    )

    tf.keras.utils.set_random_seed(cfg.seed)
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

    def client_work(client_id: int, round_num: int) -> ClientWork:
        x, y = dataset.client_data(client_id)
        order = local_order(len(x), cfg.E, cfg.seed, round_num, client_id)
        return ClientWork(x, y, order, cfg.B, client_id, store.get(client_id), round_num)

    with contextlib.ExitStack() as stack:
        # The order of a run before placements existed, which engine=tff needs: the engine is
        # built first, then the evaluation's models (built before it, engine=tff runs failed in
        # Keras: "Layer or Model is in an invalid state"), and only then TFF's worker starts;
        # leaving, the worker stops first. With placement=ray the actors come up before the
        # engine that sends them work (engine=fast: its runtime is empty).
        placement = stack.enter_context(open_placement(cfg, dataset))
        if placement is not None:  # which nodes the actors live on
            tracker.set_tags(placement.tags())
        engine = build_engine(cfg.engine, dataclasses.replace(parts, placement=placement))
        if hasattr(engine, "close"):  # its threads, or its placement's actors
            stack.callback(engine.close)
        if dataset.test_clients is not None:  # a test split per client: evaluate federatedly
            evaluator = FederatedEvaluator(
                parts.make_model(),
                dataset.x_test,
                dataset.y_test,
                dataset.test_clients,
                dataset.pad_label,
                cfg.eval_clients,
                cfg.seed,
            )
        else:
            evaluator = Evaluator(parts.make_model(), dataset.x_test, dataset.y_test)
        callbacks: list[Callback] = [
            CommunicationCallback(),
            EvaluationCallback(evaluator, cfg.eval_every, cfg.rounds, output_dir),
            TargetCallback(cfg.target_accuracy, cfg.stop_at_target),
            PrivacyCallback(parts.privacy),
            TimingCallback(),
            TrackingCallback(  # logs in measure, last: see TrackingCallback
                tracker, logged_up_to, output_dir, parts.make_model, cfg.tracking.log_model
            ),
        ]
        if cfg.checkpoint_every:
            callbacks.append(
                CheckpointCallback(ckpt_path, ckpt_key, cfg.checkpoint_every, cfg.rounds, store)
            )
        description = f"{algorithm_name(cfg)} {cfg.partition.name}"
        callbacks.append(ProgressCallback(description, cfg.rounds, progress))
        stack.enter_context(engine_runtime(cfg.engine, worker_env, output_dir / "tff_worker.log"))
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
        return train(ctx, callbacks, sampler.sample, client_work, cfg.rounds, store)
