"""Personalized evaluation: each client's own model on that client's own test data.

An algorithm with per-client models (Ditto's personal model, FedPer's head: ``personal_model``)
serves each client with a model of its own, which the global model's test accuracy does not
measure. This callback evaluates, for a seeded sample of the clients (the same every time, drawn
as ``eval_clients`` draws federated evaluation's: ``streams.evaluation``, so that on a natural
dataset both evaluate the same clients), the client's own model on the client's own test data:

- its test split, on a dataset whose clients have one (Shakespeare, EMNIST under
  ``partition=natural``: the test clients are the training clients);
- with ``holdout=F > 0`` (a top-level key, since it changes what the clients train on): a
  fraction F of each client's training examples, held out before training and never trained on
  (``fedlab.data.federate.hold_out``, ``streams.holdout``); needed on synthetic partitions and
  on TFF's CIFAR-100, whose test clients are not its training clients.

A client never sampled yet has no model of its own: its personal model is the global one. An
algorithm without per-client models (FedAvg, ...) is evaluated the same way with the global
model for every client, its personalized baseline. The global model is evaluated on the same
clients' data too, so that both distributions are over the same examples.

Logged at round 0, every ``every`` rounds (default ``eval_every``) and after the last:
``eval/personalized_accuracy`` (pooled over the clients' targets), ``eval/personalized_loss``,
``eval/personalized_accuracy_{mean,p10,p50,p90}`` (over the clients), the global model's
``eval/personalized_global_accuracy`` and ``_mean`` on the same data, ``eval/personalized_clients``
(clients with test data), ``eval/personalized_own_models`` (of them, those with a model of their
own), and ``time/personalized_eval_s``. At the end, ``personalized_accuracy.json`` holds the last
evaluation's accuracy of each client, own model and global model, for the report's figure.

``enabled``: null (the default) evaluates when there is something new to measure: ``holdout >
0``, or an algorithm with per-client models on clients with a test split of their own; true
asks for it, and a run whose clients have no test data of their own and ``holdout=0`` is refused
when the config is composed; false turns it off.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedlab import streams
from fedlab.callbacks.base import CALLBACKS, Callback, CallbackConfig
from fedlab.errors import ConfigError, UserError
from fedlab.logs import FILE_ONLY

log = logging.getLogger(__name__)

# The artifact: the last personalized evaluation's accuracy of each evaluated client.
PERSONALIZED_ACCURACY = "personalized_accuracy.json"


@dataclass
class PersonalizedConfig(CallbackConfig):
    enabled: bool | None = None  # null: when there is something new to measure (see above)
    clients: int | None = None  # how many clients (a seeded sample); null: eval_clients (all)
    every: int | None = None  # rounds between evaluations; null: eval_every

    def __post_init__(self) -> None:
        for key in ("clients", "every"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(
                    f"callbacks.personalized.{key}={value} is invalid; allowed: an integer "
                    f">= 1, or null ({'eval_clients' if key == 'clients' else 'eval_every'})"
                )


def clients_have_test_data(run: Any) -> bool:
    """Whether each training client has a test split of its own, known without loading: a
    dataset with clients of its own, under ``partition=natural``, whose test clients are its
    training clients."""
    from fedlab.data import DATASETS
    from fedlab.data.partition import PARTITIONS

    spec = DATASETS.of(run.dataset)
    natural = spec.num_natural_clients(run.dataset) is not None
    return (
        natural
        and PARTITIONS.of(run.partition).needs_natural_clients
        and not spec.separate_test_clients
    )


def has_personal_models(run: Any) -> bool:
    """Whether the run's algorithm serves each client a model of its own (``personal_model``)."""
    from fedlab.algorithms import ALGORITHMS, Algorithm

    return ALGORITHMS.of(run.algorithm).personal_model is not Algorithm.personal_model


def active(cfg: PersonalizedConfig, run: Any) -> bool:
    if cfg.enabled is not None:
        return cfg.enabled
    return run.holdout > 0 or (has_personal_models(run) and clients_have_test_data(run))


def sample_clients(total: int, sample: int | None, seed: int) -> np.ndarray:
    """The evaluated clients: a seeded sample (``streams.evaluation``, as federated evaluation
    draws its own), sorted; None or more than there are: all."""
    if sample is None or sample >= total:
        return np.arange(total)
    return np.sort(streams.evaluation(seed).choice(total, sample, replace=False))


@CALLBACKS.register("personalized")
class PersonalizedCallback(Callback):
    Config = PersonalizedConfig

    @classmethod
    def check(cls, cfg, run) -> None:
        if cfg.enabled and run.holdout == 0 and not clients_have_test_data(run):
            raise ConfigError(
                f"callbacks.personalized.enabled=true evaluates each client's model on the "
                f"client's own test data, and the clients of dataset={run.dataset.name} "
                f"partition={run.partition.name} have none with holdout=0; allowed: holdout=F "
                "with 0 < F < 1 (that fraction of each client's training examples held out as "
                "its test data, never trained on), or partition=natural on a dataset whose "
                "clients have test splits (shakespeare, emnist)"
            )
        if cfg.enabled is False and run.holdout > 0:
            raise ConfigError(
                f"holdout={run.holdout} holds out training examples that only "
                "callbacks.personalized evaluates, and callbacks.personalized.enabled=false; "
                "allowed: holdout=0, or callbacks.personalized.enabled=null|true"
            )

    def __init__(
        self,
        evaluator: Any,
        clients: np.ndarray,
        algorithm: Any,
        client_states: Any,
        every: int,
        rounds: int,
        output_dir: Path | None = None,
        compressor_arrays: int = 0,
    ) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.clients = clients
        self.algorithm = algorithm
        self.store = client_states
        self.every = every
        self.rounds = rounds
        self.output_dir = output_dir
        # A client's stored state ends with its compressor's arrays (error feedback's residual:
        # fedlab.backends.fast.engine.ClientRunner.train); the algorithm's come first.
        self.compressor_arrays = compressor_arrays
        self.last: dict[str, Any] | None = None
        from fedlab.algorithms import Algorithm

        # Whether any client can have a model of its own (FedAvg's are all the global one).
        self.personal = type(algorithm).personal_model is not Algorithm.personal_model

    @classmethod
    def create(cls, cfg, run) -> PersonalizedCallback | None:
        if not active(cfg, run.cfg):
            return None
        from fedlab.evaluation import PersonalizedEvaluator

        data = run.dataset
        if data.holdout_clients is not None:
            x, y, examples = data.x_train, data.y_train, data.holdout_clients
        elif data.own_test_clients:
            x, y, examples = data.x_test, data.y_test, data.test_clients
        else:  # the config check refuses this; a dataset loaded otherwise than it said
            raise UserError(
                f"callbacks.personalized: the clients of dataset={run.cfg.dataset.name} have no "
                "test data of their own; allowed: holdout=F with 0 < F < 1"
            )
        sample = cfg.clients if cfg.clients is not None else run.cfg.eval_clients
        chosen = sample_clients(data.num_clients, sample, run.cfg.seed)
        model = run.parts.make_model()
        evaluator = PersonalizedEvaluator(
            model, x, y, [examples[c] for c in chosen], data.pad_label
        )
        compressor = run.parts.compressor
        kept = len(model.trainable_weights) if compressor and compressor.keeps_client_state else 0
        return cls(
            evaluator,
            chosen,
            run.parts.algorithm,
            run.client_states,
            cfg.every or run.cfg.eval_every,
            run.cfg.rounds,
            run.output_dir,
            kept,
        )

    def on_train_begin(self, ctx) -> None:
        if ctx.progress.round == 0:
            weights = ctx.engine.model_weights(ctx.state)
            ctx.tracker.log_metrics(self.evaluate(weights, {}), step=0)

    def measure(self, ctx, record) -> None:
        if record.round % self.every and record.round != self.rounds:
            return
        weights = ctx.engine.model_weights(record.output.state)
        # This round's client states are not in the store yet (the loop commits them after).
        record.metrics.update(self.evaluate(weights, record.output.client_states, record.round))

    def own_model(self, weights: list[np.ndarray], stored: list[np.ndarray] | None):
        """The client's own model (all of the model's weights), or None: the global one."""
        if stored is None:
            return None
        own_state = stored[: len(stored) - self.compressor_arrays] or None
        trainable = len(self.evaluator.model.trainable_weights)
        own = self.algorithm.personal_model(weights[:trainable], own_state)
        return None if own is None else [*own, *weights[trainable:]]

    def evaluate(
        self, weights: list[np.ndarray], fresh: dict[int, list[np.ndarray]], round_num: int = 0
    ) -> dict[str, float]:
        started = time.perf_counter()
        global_sums = self.evaluator(weights)
        sums = global_sums.copy()
        own_models = 0
        for row, client in enumerate(self.clients if self.personal else ()):
            client = int(client)
            stored = fresh[client] if client in fresh else self.store.get(client)
            own = self.own_model(weights, stored)
            if own is not None:
                sums[row] = self.evaluator(own, [row])[0]
                own_models += 1
        metrics = {
            **_summary(sums, "eval/personalized"),
            **{
                k: v
                for k, v in _summary(global_sums, "eval/personalized_global").items()
                if k.endswith(("accuracy", "accuracy_mean"))
            },
            "eval/personalized_own_models": float(own_models),
            "time/personalized_eval_s": time.perf_counter() - started,
        }
        log.info(
            "round %d: personalized accuracy %.4f (global model %.4f on the same data), "
            "%d clients, %d with a model of their own (evaluated in %.1f s)",
            round_num,
            metrics["eval/personalized_accuracy"],
            metrics["eval/personalized_global_accuracy"],
            len(self.clients),
            own_models,
            metrics["time/personalized_eval_s"],
            extra=FILE_ONLY,  # the job's log; the console has the bar, or the progress lines
        )
        has = sums[:, 2] > 0
        self.last = {
            "round": round_num,
            "clients": [int(c) for c in self.clients[has]],
            "personalized": (sums[has, 1] / sums[has, 2]).tolist(),
            "global": (global_sums[has, 1] / global_sums[has, 2]).tolist(),
            "pooled": {
                "personalized": metrics["eval/personalized_accuracy"],
                "global": metrics["eval/personalized_global_accuracy"],
            },
        }
        return metrics

    def on_train_end(self, ctx) -> None:
        if self.last is None or self.output_dir is None:
            return
        path = self.output_dir / PERSONALIZED_ACCURACY
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.last))
        ctx.tracker.log_artifact(path)


def _summary(sums: np.ndarray, prefix: str) -> dict[str, float]:
    """Pooled loss and accuracy over the clients' targets, and the accuracy's distribution over
    the clients that have a target."""
    targets = max(float(sums[:, 2].sum()), 1.0)
    has = sums[:, 2] > 0
    accuracy = sums[has, 1] / sums[has, 2]
    out = {
        f"{prefix}_loss": float(sums[:, 0].sum() / targets),
        f"{prefix}_accuracy": float(sums[:, 1].sum() / targets),
        f"{prefix}_clients": float(has.sum()),
    }
    if accuracy.size:
        p10, p50, p90 = np.percentile(accuracy, [10, 50, 90])
        out.update(
            {
                f"{prefix}_accuracy_mean": float(accuracy.mean()),
                f"{prefix}_accuracy_p10": float(p10),
                f"{prefix}_accuracy_p50": float(p50),
                f"{prefix}_accuracy_p90": float(p90),
            }
        )
    return out
