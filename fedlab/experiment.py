"""One federated run: data → clients → rounds of FedAvg → test accuracy → tracker.

This is the round loop of McMahan et al. 2017, Algorithm 1, kept apart from the algorithm itself
(``fedlab.tff``) as in fedjax's ``federated_experiment``: it samples the clients, hands their work
to the algorithm, evaluates the global model on the test set every ``eval_every`` rounds, counts
what is communicated, and reports everything to the tracker.
"""

from __future__ import annotations

import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from fedlab import checkpoint, hardware
from fedlab import data as fl_data
from fedlab.config import ConfigError, OptimizerName, PartitionName, RunConfig
from fedlab.errors import DivergedError
from fedlab.quiet import silence_frameworks
from fedlab.sampling import PARTITION_STREAM, ClientSampler, local_order
from fedlab.tracking import NullTracker, Tracker, flatten

BYTES_PER_MB = 1e6


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

    def summary(self) -> str:
        """The closing paragraph printed at the end of a run."""
        target = (
            f"reached the target at round {self.rounds_to_target}"
            if self.rounds_to_target is not None
            else "did not reach the target"
        )
        where = f" Recorded as {self.location}." if self.location else ""
        return (
            f"After {self.rounds} rounds: final test accuracy {self.final_accuracy:.4f}, "
            f"best {self.best_accuracy:.4f}; {target}; {self.total_mb:,.1f} MB communicated; "
            f"wall time {self.wall_s:.1f} s.{where}"
        )


def algorithm_name(cfg: RunConfig) -> str:
    """The paper's (or Reddi et al. 2020's) name for this client/server optimizer pair."""
    server = cfg.server_optimizer.name
    if server is OptimizerName.sgd:
        fedsgd = cfg.E == 1 and cfg.B is None and cfg.client_optimizer.name is OptimizerName.sgd
        return "FedSGD" if fedsgd else "FedAvg"
    return {
        OptimizerName.sgdm: "FedAvgM",
        OptimizerName.adam: "FedAdam",
        OptimizerName.yogi: "FedYogi",
        OptimizerName.adagrad: "FedAdagrad",
    }[server]


def partition_clients(cfg: RunConfig, labels: np.ndarray) -> list[np.ndarray]:
    """Each client's example indices, deterministic in ``cfg.seed``."""
    rng = np.random.default_rng([cfg.seed, PARTITION_STREAM])
    part = cfg.partition
    try:
        if part.name is PartitionName.iid:
            return fl_data.iid(len(labels), cfg.num_clients, rng)
        if part.name is PartitionName.shards:
            return fl_data.shards(
                labels,
                cfg.num_clients,
                part.shards_per_client,
                part.shard_size,
                part.assignment.value,
                rng,
            )
        return fl_data.dirichlet(labels, cfg.num_clients, part.alpha, rng)
    except fl_data.PartitionError as err:
        raise ConfigError(str(err)) from None


def _check_diverged(out, round_num: int) -> None:
    """Stop on divergence, which TFF would otherwise hide (see ``fedlab.tff.RoundOutput``)."""
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


@dataclass
class Progress:
    """What a run has reached; saved in every checkpoint."""

    round: int = 0
    history: dict[int, float] = field(default_factory=dict)  # test accuracy by evaluated round
    rounds_to_target: int | None = None
    total_mb: float = 0.0


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
    started = time.monotonic()
    silence_frameworks()
    tracker = tracker or NullTracker()
    output_dir.mkdir(parents=True, exist_ok=True)
    worker_env = hardware.configure(cfg.hardware, cfg.engine)
    dataset = fl_data.load_mnist(cfg.dataset.source.value, cfg.dataset.path)
    clients = partition_clients(cfg, dataset.y_train)
    ckpt_key = checkpoint.config_key(cfg)
    ckpt_path = checkpoint.checkpoint_path(
        cfg, checkpoint_dir or output_dir / "checkpoints", ckpt_key
    )
    if cfg.checkpoint_every:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)  # an unusable directory fails now
    resumed = checkpoint.load(ckpt_path, ckpt_key) if cfg.resume else None

    def result(done: Progress) -> RunResult:
        return RunResult(
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
        return result(
            Progress(
                round=resumed.round,
                history=resumed.history,
                rounds_to_target=resumed.rounds_to_target,
                total_mb=resumed.total_mb,
            )
        )

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
                    "partition": cfg.partition.name.value,
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
            cfg,
            dataset,
            clients,
            worker_env,
            output_dir,
            tracker,
            progress,
            ckpt_path=ckpt_path,
            ckpt_key=ckpt_key,
            resumed=resumed,
            logged_up_to=logged_up_to,
        )
    except KeyboardInterrupt:
        tracker.finish("KILLED", "interrupted by Ctrl-C or SIGTERM")
        raise
    except BaseException as err:
        tracker.finish("FAILED", f"{type(err).__name__}: {err}")
        raise
    tracker.finish("FINISHED")
    return result(done)


def _train(
    cfg: RunConfig,
    dataset: fl_data.ArrayDataset,
    clients: list[np.ndarray],
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
    """The rounds, from the start or from ``resumed``.

    Rounds up to ``logged_up_to`` are already in the tracker (a run killed after logging a round
    but before checkpointing it): they are recomputed, identically, but not logged again.
    """
    # TFF (slow to import) only once the inputs are known to be good.
    import tensorflow as tf

    from fedlab.algorithm import ClientWork, build_engine, engine_runtime
    from fedlab.evaluation import Evaluator
    from fedlab.models import build_model
    from fedlab.plots import plot_accuracy

    tf.keras.utils.set_random_seed(cfg.seed)
    initial_weights = build_model(cfg.model.name).get_weights()
    model_bytes = sum(w.nbytes for w in initial_weights)
    sampler = ClientSampler(cfg.client_sampling, cfg.num_clients, cfg.clients_per_round, cfg.seed)
    algorithm = build_engine(cfg.engine, cfg.model.name, cfg.client_optimizer, cfg.server_optimizer)
    evaluate = Evaluator(cfg.model.name, dataset.x_test, dataset.y_test)

    def save(state, reached: Progress) -> None:
        checkpoint.save(
            ckpt_path,
            checkpoint.Checkpoint(
                round=reached.round,
                state=algorithm.state_arrays(state),
                history=reached.history,
                rounds_to_target=reached.rounds_to_target,
                total_mb=reached.total_mb,
                run_id=tracker.run_id,
                config_key=ckpt_key,
            ),
        )

    with engine_runtime(cfg.engine, worker_env, output_dir / "tff_worker.log"):
        if resumed is None:
            at = Progress()
            state = algorithm.initialize(initial_weights)
            loss0, acc0 = evaluate(initial_weights)
            at.history[0] = acc0
            tracker.log_metrics(
                {"eval/loss": loss0, "eval/accuracy": acc0, "eval/best_accuracy": acc0}, step=0
            )
        else:
            at = Progress(
                round=resumed.round,
                history=dict(resumed.history),
                rounds_to_target=resumed.rounds_to_target,
                total_mb=resumed.total_mb,
            )
            try:
                state = algorithm.state_from_arrays(resumed.state)
            except ValueError as err:
                raise checkpoint.CheckpointError(
                    f"checkpoint {ckpt_path} does not fit this model and optimizers ({err}); "
                    "delete it or run with resume=false"
                ) from None
        saved = at.round
        bar = tqdm(
            range(at.round + 1, cfg.rounds + 1),
            desc=f"{algorithm_name(cfg)} {cfg.partition.name.value}",
            unit="round",
            initial=at.round,
            total=cfg.rounds,
            disable=not progress,
            dynamic_ncols=True,
        )
        try:
            for round_num in bar:
                tick = time.monotonic()
                work = []
                for client_id in sampler.sample(round_num):
                    idx = clients[client_id]
                    order = local_order(len(idx), cfg.E, cfg.seed, round_num, int(client_id))
                    work.append(
                        ClientWork(dataset.x_train[idx], dataset.y_train[idx], order, cfg.B)
                    )
                out = algorithm.next(state, work)
                _check_diverged(out, round_num)
                broadcast_mb = len(work) * model_bytes / BYTES_PER_MB
                uploaded_mb = len(work) * model_bytes / BYTES_PER_MB
                total_mb = at.total_mb + broadcast_mb + uploaded_mb
                metrics = {
                    "train/loss": out.train_loss,
                    "train/accuracy": out.train_accuracy,
                    "train/examples_dropped": out.examples_expected - out.examples_trained,
                    "comm/broadcast_mb": broadcast_mb,
                    "comm/uploaded_mb": uploaded_mb,
                    "comm/total_mb": total_mb,
                }
                history = at.history
                rounds_to_target = at.rounds_to_target
                if round_num % cfg.eval_every == 0 or round_num == cfg.rounds:
                    eval_loss, eval_acc = evaluate(algorithm.model_weights(out.state))
                    history = {**history, round_num: eval_acc}
                    metrics["eval/loss"] = eval_loss
                    metrics["eval/accuracy"] = eval_acc
                    metrics["eval/best_accuracy"] = max(history.values())
                    if rounds_to_target is None and eval_acc >= cfg.target_accuracy:
                        rounds_to_target = round_num
                        metrics["rounds_to_target"] = round_num
                metrics["time/round_s"] = time.monotonic() - tick
                # The round is done: only now does it become the run's state.
                state = out.state
                at = Progress(round_num, history, rounds_to_target, total_mb)
                if round_num > logged_up_to:
                    tracker.log_metrics(metrics, step=round_num)
                if cfg.checkpoint_every and (
                    round_num % cfg.checkpoint_every == 0 or round_num == cfg.rounds
                ):
                    save(state, at)
                    saved = round_num
                bar.set_postfix(
                    loss=f"{out.train_loss:.4f}",
                    test_acc=f"{history[max(history)]:.4f}",
                    refresh=False,
                )
                if cfg.stop_at_target and rounds_to_target is not None:
                    if cfg.checkpoint_every and saved < round_num:
                        save(state, at)
                        saved = round_num
                    break
        except KeyboardInterrupt:
            # Abandon the round in flight; keep the last finished one.
            if cfg.checkpoint_every and at.round > saved:
                save(state, at)
            raise
        finally:
            bar.close()
        final_weights = algorithm.model_weights(state)

    plot = plot_accuracy(at.history, cfg.target_accuracy, output_dir / "test_accuracy.png")
    tracker.log_artifact(plot)
    if cfg.tracking.log_model:
        evaluate.model.set_weights(final_weights)
        model_path = output_dir / "model.keras"
        evaluate.model.save(model_path)
        tracker.log_artifact(model_path)
    return at
