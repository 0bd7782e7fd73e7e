"""``engine=fast``: a federated algorithm's rounds in this process, with plain TensorFlow.

For FedAvg with the mean aggregator this is TFF 0.87's ``build_weighted_fed_avg`` recomputed
step for step (``learning/algorithms/fed_avg.py``, ``templates/model_delta_client_work.py``,
``aggregators/mean.py``, ``templates/apply_optimizer_finalizer.py``); other algorithms change
the steps through the hooks of ``fedlab.algorithms.Algorithm`` (the local gradient, what a
client uploads, the server's own state) and other aggregators the combination
(``fedlab.aggregators``):

- every sampled client starts from the global weights with a freshly initialised client optimizer
  (its hyperparameters come from the server state) and takes one step per batch, in the order of
  its ``ClientWork``; the loss is the batch mean of the softmax cross-entropy over its targets
  (``fedlab.backends.loss``: one per example, or one per position of a sequence);
- its update is ``initial - trained`` weights (the server optimizer treats it as a gradient), and
  its weight is the number of examples it trained on; an update with any non-finite value is
  replaced by zeros, its weight by 0, and its metrics drop out of the round's metrics;
- a malicious client (``fedlab.attacks``) then replaces what it uploads (``poison_update``),
  before its compressor encodes it; on the server, an omniscient attack replaces the malicious
  clients' updates by what it crafts from the round's honest ones (``collude``), and the
  aggregator is told which updates are malicious, for its log (``Aggregator.next_marked``);
- the server averages ``sum(weight * update) / sum(weight)`` and takes one server optimizer step
  with that average; if the average is not finite (every client diverged, or an overflow), the
  step is not taken and the state stays as it was (``update_skipped``);
- train loss is the example-weighted mean of the batch losses, train accuracy the fraction of
  targets predicted correctly, both measured on each batch before its step (TFF's Keras
  metrics, summed over clients, then finalised).

Why it is fast: no TFF (no import, no worker process, no serialising the data and the weights to
it each round), and a client's whole local training is one ``tf.function`` holding a
``tf.while_loop`` over its batches, so there is no Python per step. The function has one
signature for every client (batch boundaries are data), so it is traced once per engine, and the
engine's cost depends only on the sampled clients' work, never on the total number of clients.
Clients train ``parallel_clients`` at a time on threads (TensorFlow releases the GIL), or, with
``placement=ray``, in slices on Ray actors that return partial sums
(``fedlab.backends.fast.placement``): the engine hands "train these clients" to its placement and
combines the slices it gets back.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from fedlab import streams
from fedlab.aggregators import Aggregator
from fedlab.algorithms import Algorithm
from fedlab.backends.fast.functional import FunctionalModel, functional_model
from fedlab.backends.loss import batch_loss
from fedlab.compression import Compressor
from fedlab.core.types import ClientWork, RoundOutput, check_state_arrays
from fedlab.optimizers import Optimizer

# How many clients train at the same time: one per core. fedlab runs this engine with one
# intra-op thread (fedlab.hardware), so each client is single-threaded and the cores work on
# different clients. Measured on the 2-core CPU with scripts/benchmark.py (notebook's CNN round,
# quiet machine): 1 client on 2 threads 11.2 s; 2 clients sharing 2 threads 9.4 s; 2 clients
# of 1 thread each 7.4 s. The result is the same bit for bit either way (each client is computed
# alone; a test checks it). FEDLAB_FAST_PARALLEL_CLIENTS overrides the count.
PARALLEL_CLIENTS_ENV = "FEDLAB_FAST_PARALLEL_CLIENTS"


def default_parallel_clients() -> int:
    value = os.environ.get(PARALLEL_CLIENTS_ENV)
    if value:
        return max(int(value), 1)
    return max(len(os.sched_getaffinity(0)), 1)


@dataclass(frozen=True, eq=False)
class FastState:
    """The server state, laid out as TFF's ``LearningAlgorithmState`` flattens.

    ``weights``: the global model (Keras order); ``client_hparams``: the client optimizer's
    hyperparameters (TFF's ``client_work`` state); ``server``: the server optimizer's state
    (TFF's ``finalizer`` state). TFF's ``distributor`` and ``aggregator`` states are empty.
    ``aggregator``: the aggregator's own state (DP-FedAvg's clip and noise counter; empty for
    the mean, where TFF's is empty too, and in TFF's place, between client work and finalizer).
    ``algorithm``: the algorithm's own server state (SCAFFOLD's ``c``; empty for FedAvg, so that
    FedAvg's state flattens exactly as TFF's).
    """

    weights: tuple[np.ndarray, ...]
    client_hparams: dict[str, np.ndarray]
    server: dict[str, Any]
    algorithm: dict[str, list[np.ndarray]]
    aggregator: dict[str, np.ndarray]

    def structure(self) -> tuple:
        return (
            list(self.weights),
            self.client_hparams,
            self.aggregator,
            self.server,
            self.algorithm,
        )


def _batch_bounds(work: ClientWork) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flat visiting order and each step's (start, size) in it: epoch after epoch, batches of
    ``batch_size`` with a short last one, as ``tf.data``'s ``batch`` cuts them."""
    order = np.asarray(work.order, np.int32)
    epochs, n = order.shape if order.ndim == 2 else (1, order.size)
    batch = work.batch_size or n
    starts, sizes = [], []
    if n:
        within = np.arange(0, n, batch, dtype=np.int32)
        for e in range(epochs):
            starts.append(e * n + within)
            sizes.append(np.minimum(batch, n - within).astype(np.int32))
    flat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int32)  # noqa: E731
    return order.reshape(-1), flat(starts), flat(sizes)


class _PersonalObjective:
    """An algorithm's personal objective (Ditto's ``F_i(v) + lambda/2 ||v - w||^2``) in the shape
    ``_ClientTrainer`` takes a local objective: its one input is the round's global model."""

    num_client_inputs = 1

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm

    def local_gradient(self, grads, weights, initial, inputs):
        (global_weights,) = inputs
        return self.algorithm.personal_gradient(grads, weights, global_weights)


class _ClientTrainer:
    """One client's local training (TFF's ``model_delta_client_work``) as one ``tf.function``.

    The weights and the client optimizer's slots are variables owned by this trainer, so that the
    optimizer step can use TensorFlow's fused kernels; a trainer serves one client at a time (the
    engine keeps one per concurrent client). Every call starts from the given global weights and
    from a fresh optimizer state, as TFF re-initialises the client optimizer for every client.
    """

    def __init__(
        self,
        model: FunctionalModel,
        optimizer: Optimizer,
        algorithm: Algorithm,
        target_shape: tuple[int, ...] = (),
        pad_label: int | None = None,
    ) -> None:
        self.model = model
        self.pad_label = pad_label
        self.optimizer = optimizer
        self.algorithm = algorithm
        self.clipnorm = getattr(optimizer.cfg, "global_clipnorm", None)
        trainable = model.shapes[: model.num_trainable]
        self.weights = [tf.Variable(tf.zeros(s, tf.float32), name="w") for s in trainable]
        self.slots = {
            key: [tf.Variable(optimizer.slot_start(key, w), name=key) for w in self.weights]
            for key in optimizer.slots
        }
        self.train = tf.function(
            self._train,
            input_signature=[
                [tf.TensorSpec(s, tf.float32) for s in trainable],
                {k: tf.TensorSpec((), tf.float32) for k in optimizer.hparams},
                tf.TensorSpec((None, None), tf.float32),  # x
                tf.TensorSpec((None, *target_shape), tf.int32),  # y
                tf.TensorSpec((None,), tf.int32),  # flat visiting order
                tf.TensorSpec((None,), tf.int32),  # batch starts in it
                tf.TensorSpec((None,), tf.int32),  # batch sizes
                # the algorithm's model-shaped inputs (SCAFFOLD's correction c - c_i)
                [
                    [tf.TensorSpec(s, tf.float32) for s in trainable]
                    for _ in range(algorithm.num_client_inputs)
                ],
                tf.TensorSpec((2,), tf.int64),  # the client's dropout seed (fedlab.streams.dropout)
            ],
        )

    def _train(self, initial, hparams, x, y, order, starts, sizes, inputs, seed):
        forward = self.model.forward
        for w, value in zip(self.weights, initial, strict=True):
            w.assign(value)
        for key, variables in self.slots.items():
            for v in variables:
                v.assign(self.optimizer.slot_start(key, v))

        def body(i, loss_total, correct, examples, target_count):
            start, size = starts[i], sizes[i]
            idx = order[start : start + size]
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                step_seed = tf.random.experimental.stateless_fold_in(seed, i)
                logits = forward(self.weights, xb, step_seed)
                loss, hits, targets = batch_loss(logits, yb, size, self.pad_label)
            # An embedding's gradient comes as IndexedSlices; the optimizers take dense ones.
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.weights)]
            grads = self.algorithm.local_gradient(grads, self.weights, initial, inputs)
            if self.clipnorm is not None:
                # The gradient the optimizer takes, the algorithm's terms included, as Keras'
                # global_clipnorm clips the gradient of the whole loss.
                grads, _ = tf.clip_by_global_norm(grads, self.clipnorm)
            self.optimizer.apply_to_variables(hparams, i + 1, self.weights, self.slots, grads)
            # TFF's Keras metrics see the batch's predictions before the step.
            return (
                i + 1,
                loss_total + loss * tf.cast(size, tf.float32),
                correct + hits,
                examples + tf.cast(size, tf.int64),
                target_count + targets,
            )

        steps = tf.shape(starts)[0]
        zero = tf.constant(0.0)
        _, loss_total, correct, examples, target_count = tf.while_loop(
            lambda i, *_: i < steps,
            body,
            (tf.constant(0), zero, zero, tf.constant(0, tf.int64), zero),
            parallel_iterations=1,
        )
        update = [a - w.read_value() for a, w in zip(initial, self.weights, strict=True)]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(u)) for u in update])
        # A non-finite update drops out with weight 0, and so do the client's metrics.
        weight = tf.where(finite, tf.cast(examples, tf.float32), 0.0)
        count = tf.cast(examples, tf.float32)
        # (loss sum, examples, targets right, targets): the loss is a mean over examples of
        # batch means, the accuracy over targets (the same count when each example has one).
        metrics = tf.where(
            finite, tf.stack([loss_total, count, correct, target_count]), tf.zeros(4)
        )
        return update, weight, metrics, tf.where(finite, examples, 0), finite


@dataclass(frozen=True, eq=False)
class Broadcast:
    """What the server sends the clients of one round, the same for every client: the global
    model's trainable weights, the client optimizer's hyperparameters, the algorithm's and the
    aggregator's server state (SCAFFOLD's ``c``; DP-FedAvg's clip)."""

    weights: list[np.ndarray]
    client_hparams: dict[str, np.float32]
    algorithm: dict[str, list[np.ndarray]]
    aggregator: dict[str, np.ndarray]


@dataclass(eq=False)
class ClientResult:
    """One client's round: ``update`` is None when it was not finite (weight 0, no metrics)."""

    update: list[np.ndarray] | None
    weight: float
    metrics: np.ndarray  # (loss sum, examples, targets right, targets), float32
    trained: int
    upload: dict[str, list[np.ndarray]]
    client_state: list[np.ndarray] | None
    nbytes: int


class ClientRunner:
    """Trains clients from a ``Broadcast``: ``parallel_clients`` at a time, each on a
    ``_ClientTrainer`` of its own, on threads. The engine has one for ``placement=local``; each
    Ray actor has one for its slice (``fedlab.backends.fast.placement``)."""

    def __init__(
        self,
        model: FunctionalModel,
        client_optimizer: Optimizer,
        algorithm: Algorithm,
        compressor: Compressor,
        parallel_clients: int,
        target_shape: tuple[int, ...] = (),
        pad_label: int | None = None,
        seed: int = 0,
        attack: Any = None,
    ) -> None:
        self.seed = seed  # the run's: each client's dropout seed comes from it (streams.dropout)
        # The run's fedlab.attacks.Attack, if its malicious clients replace their uploads.
        self.attack = attack if attack is not None and attack.poisons_updates else None
        self.algorithm = algorithm
        algorithm.bind_model(model.layer_of[: model.num_trainable])
        self.compressor = compressor
        self.shapes = list(model.shapes[: model.num_trainable])
        self.parallel_clients = parallel_clients
        self._trainers: queue.SimpleQueue[_ClientTrainer] = queue.SimpleQueue()
        # A personal model (Ditto's) trains on trainers of its own, whose local objective is the
        # algorithm's personal one, with the round's global model as their one input.
        self._personal: queue.SimpleQueue[_ClientTrainer] = queue.SimpleQueue()
        for _ in range(parallel_clients):
            self._trainers.put(
                _ClientTrainer(model, client_optimizer, algorithm, target_shape, pad_label)
            )
            if algorithm.personal:
                personal = _PersonalObjective(algorithm)
                self._personal.put(
                    _ClientTrainer(model, client_optimizer, personal, target_shape, pad_label)
                )
        self._pool = (
            ThreadPoolExecutor(parallel_clients, thread_name_prefix="fedlab-client")
            if parallel_clients > 1
            else None
        )

    def train(self, broadcast: Broadcast, clients: list[ClientWork]) -> list[ClientResult]:
        """Every client's result, in the order of ``clients``."""
        weights = [tf.constant(w) for w in broadcast.weights]
        hparams = {key: tf.constant(v, tf.float32) for key, v in broadcast.client_hparams.items()}
        algorithm, shapes, compressor, attack = (
            self.algorithm,
            self.shapes,
            self.compressor,
            self.attack,
        )
        server_algorithm = broadcast.algorithm
        # A client's stored state: the algorithm's arrays, then the compressor's (its residual).
        kept = len(shapes) if compressor.keeps_client_state else 0

        def train(work: ClientWork) -> ClientResult:
            order, starts, sizes = _batch_bounds(work)
            stored = work.state or []
            own_state = stored[: len(stored) - kept] or None
            compressor_state = stored[len(stored) - kept :] or None
            start = algorithm.client_start(broadcast.weights, own_state)
            inputs = algorithm.client_inputs(server_algorithm, own_state, shapes)
            x = tf.constant(np.asarray(work.x, np.float32).reshape(len(work.x), -1))
            y = tf.constant(np.asarray(work.y, np.int32))
            batches = (tf.constant(order), tf.constant(starts), tf.constant(sizes))
            seed = tf.constant(streams.dropout(self.seed, work.round_num, work.client_id))
            update, weight, metrics, trained, finite = self._run(
                self._trainers,
                weights if start is broadcast.weights else [tf.constant(w) for w in start],
                hparams,
                x,
                y,
                batches,
                [[tf.constant(a, tf.float32) for a in arrays] for arrays in inputs],
                seed,
            )
            raw_bytes = sum(int(np.prod(s)) for s in shapes) * 4
            if not bool(finite):
                return ClientResult(None, 0.0, metrics.numpy(), 0, {}, None, raw_bytes)
            update = [u.numpy() for u in update]
            extra, client_state = algorithm.client_result(
                update, len(starts), inputs, own_state, server_algorithm
            )
            client_state = algorithm.client_keep(start, update, client_state)
            if algorithm.personal:
                personal = algorithm.personal_start(broadcast.weights, own_state)
                p_update, _, _, _, p_finite = self._run(
                    self._personal,
                    [tf.constant(w) for w in personal],
                    hparams,
                    x,
                    y,
                    batches,
                    [weights],
                    seed,
                )
                if bool(p_finite):  # a diverged personal model is not kept
                    trained_personal = [
                        s - u.numpy() for s, u in zip(personal, p_update, strict=True)
                    ]
                    client_state = algorithm.personal_state(trained_personal, client_state)
            update, weight = algorithm.client_upload(update, float(weight), len(starts), own_state)
            if attack is not None and work.client_id in attack.malicious:
                update, weight = attack.poison_update(
                    update, weight, work.round_num, work.client_id
                )
            # The server receives the update encoded (SCAFFOLD's variates use the true one).
            nbytes = raw_bytes
            if compressor.active:
                update, nbytes, residual = compressor.encode(
                    update, compressor_state, work.round_num, work.client_id
                )
                if kept:
                    client_state = [*(client_state or []), *residual]
            return ClientResult(
                update, float(weight), metrics.numpy(), int(trained), extra, client_state, nbytes
            )

        return list(self._pool.map(train, clients)) if self._pool else list(map(train, clients))

    @staticmethod
    def _run(trainers: queue.SimpleQueue, start, hparams, x, y, batches, inputs, seed):
        """One local training on a trainer taken from ``trainers`` (and given back)."""
        trainer = trainers.get()
        try:
            return trainer.train(start, hparams, x, y, *batches, inputs, seed)
        finally:
            trainers.put(trainer)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


@dataclass(eq=False)
class SliceResult:
    """A slice of a round's cohort, trained and folded: its metric sums, examples and bytes,
    the finite clients' uploads and weights (in cohort order) and the clients' new states; then
    either every finite update (``updates``: in this process, where robust aggregators see every
    update) or the aggregator's partial sum over them (``partial``: from a Ray actor, so that
    one model-sized sum travels, not one per client)."""

    metric_sums: np.ndarray
    examples: int
    update_bytes: int
    finite: int
    uploads: list[dict[str, list[np.ndarray]]]
    weights: list[float]
    client_states: dict[int, list[np.ndarray]]
    updates: list[list[np.ndarray]] | None = None
    partial: Any = None
    client_ids: list[int] | None = None  # the finite clients, in cohort order


def fold_slice(
    clients: list[ClientWork],
    results: list[ClientResult],
    aggregator: Aggregator | None = None,
    aggregator_state: dict[str, np.ndarray] | None = None,
) -> SliceResult:
    """The clients' results as one ``SliceResult``: with ``aggregator``, their updates folded
    into its partial sum (``Aggregator.accumulate``) in the order of ``clients``."""
    metric_sums = np.zeros(4, np.float32)
    examples = update_bytes = 0
    updates, weights, uploads, client_states, ids = [], [], [], {}, []
    for work, result in zip(clients, results, strict=True):
        metric_sums += result.metrics
        examples += result.trained
        update_bytes += result.nbytes
        if result.update is None:
            continue  # not finite: TFF gives it weight 0 and drops its metrics
        updates.append(result.update)
        weights.append(result.weight)
        ids.append(work.client_id)
        uploads.append(result.upload)
        if result.client_state is not None:
            client_states[work.client_id] = result.client_state
    folded = SliceResult(
        metric_sums, examples, update_bytes, len(updates), uploads, weights, client_states
    )
    folded.client_ids = ids
    if aggregator is None:
        folded.updates = updates
        return folded
    for update, weight in zip(updates, weights, strict=True):
        folded.partial = aggregator.accumulate(aggregator_state, folded.partial, update, weight)
    return folded


class LocalPlacement:
    """``placement=local``: every client of the round in this process (``ClientRunner``)."""

    def __init__(self, runner: ClientRunner) -> None:
        self.runner = runner

    def train(self, broadcast: Broadcast, clients: list[ClientWork]) -> list[SliceResult]:
        return [fold_slice(clients, self.runner.train(broadcast, clients))]

    def close(self) -> None:
        self.runner.close()


class FastEngine:
    """An algorithm, an aggregator and a server optimizer, computed in this process; the
    clients train where ``placement`` puts them (None: here, on ``parallel_clients`` threads;
    ``fedlab.backends.fast.placement.RayPlacement``: on Ray actors)."""

    def __init__(
        self,
        keras_model: tf.keras.Model,
        client_optimizer: Optimizer,
        server_optimizer: Optimizer,
        algorithm: Algorithm,
        aggregator: Aggregator,
        parallel_clients: int | None = None,
        compressor: Compressor | None = None,
        target_shape: tuple[int, ...] = (),
        pad_label: int | None = None,
        seed: int = 0,
        placement: Any = None,
        attack: Any = None,
    ) -> None:
        self.model: FunctionalModel = functional_model(keras_model)
        self.seed = seed
        # The run's fedlab.attacks.Attack when some clients are malicious (None: none).
        self.attack = attack if attack is not None and attack.active else None
        self.compressor = compressor or Compressor(None, 0)
        self.client_optimizer = client_optimizer
        self.server_optimizer = server_optimizer
        self.algorithm = algorithm
        algorithm.bind_model(self.model.layer_of[: self.model.num_trainable])
        self.aggregator = aggregator
        aggregator.bind_shapes(self.trainable_shapes)
        if placement is None:
            self.parallel_clients = parallel_clients or default_parallel_clients()
            runner = ClientRunner(
                self.model,
                client_optimizer,
                algorithm,
                self.compressor,
                self.parallel_clients,
                target_shape,
                pad_label,
                seed,
                self.attack,
            )
            placement = LocalPlacement(runner)
        self.placement = placement
        self._server_step = tf.function(self._server_update)

    # -- the server: TFF's apply_optimizer_finalizer ---------------------------------------

    def _server_update(self, weights, server_state, aggregate):
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(m)) for m in aggregate])
        new_state, new_weights = self.server_optimizer.step(server_state, list(weights), aggregate)
        return new_state, new_weights, tf.logical_not(finite)

    # -- the Engine protocol --------------------------------------------------------------

    def initialize(self, weights: list[np.ndarray]) -> FastState:
        """The server state, with the global model set to ``weights`` (Keras order)."""
        weights = [np.asarray(w, np.float32) for w in weights]
        shapes = [tuple(w.shape) for w in weights]
        if shapes != list(self.model.shapes):
            raise ValueError(f"weights of shapes {shapes}, the model has {list(self.model.shapes)}")
        trainable = self.trainable_shapes
        return FastState(
            weights=tuple(weights),
            client_hparams=self._client_hparams() if self.algorithm.client_hparams_in_state else {},
            server=self.server_optimizer.initial_state(trainable),
            algorithm=self.algorithm.initial_state(trainable),
            aggregator=self.aggregator.initial_state(),
        )

    def _client_hparams(self) -> dict[str, np.float32]:
        return {k: np.float32(v) for k, v in sorted(self.client_optimizer.hparams.items())}

    def _round_hparams(self, state: FastState, round_num: int) -> dict[str, np.float32]:
        """The client optimizer's hyperparameters in round ``round_num``: the state's (TFF's
        layout keeps them there), with the learning rate its schedule gives for the round; the
        state itself keeps the base rate, so a checkpoint does not depend on the round."""
        hparams = state.client_hparams or self._client_hparams()
        if getattr(self.client_optimizer.cfg, "lr_decay", 1) == 1:
            return hparams
        lr = self.client_optimizer.cfg.learning_rate_at(round_num)
        return {**hparams, "learning_rate": np.float32(lr)}

    @property
    def trainable_shapes(self) -> list[tuple[int, ...]]:
        return list(self.model.shapes[: self.model.num_trainable])

    def next(self, state: FastState, clients: list[ClientWork]) -> RoundOutput:
        """One round of the algorithm on the sampled clients."""
        if not clients:
            raise ValueError("a round needs at least one client")
        k = self.model.num_trainable
        broadcast = Broadcast(
            weights=[np.asarray(w) for w in state.weights[:k]],
            client_hparams=self._round_hparams(state, clients[0].round_num),
            algorithm=state.algorithm,
            aggregator=state.aggregator,
        )
        slices = self.placement.train(broadcast, clients)
        # Slices in cohort order; with one slice, each sum below is that slice's, bit for bit.
        metric_sums = slices[0].metric_sums
        for more in slices[1:]:
            metric_sums = metric_sums + more.metric_sums
        examples = sum(s.examples for s in slices)
        update_bytes = sum(s.update_bytes for s in slices)
        uploads = [upload for s in slices for upload in s.uploads]
        weights_used = [w for s in slices for w in s.weights]  # one per upload
        client_states = {cid: cs for s in slices for cid, cs in s.client_states.items()}
        attack, attack_metrics, malicious = self.attack, {}, None
        if attack is not None:
            attack_metrics["malicious_clients"] = float(
                sum(work.client_id in attack.malicious for work in clients)
            )
            malicious = [c in attack.malicious for s in slices for c in s.client_ids or []]
        if not any(s.finite for s in slices):
            aggregate, aggregator_state, aggregator_metrics = None, state.aggregator, {}
        elif slices[0].updates is not None:  # every update is here
            updates = [u for s in slices for u in s.updates]
            if attack is not None and attack.omniscient and any(malicious):
                updates, crafted = attack.collude(updates, malicious, clients[0].round_num)
                attack_metrics.update(crafted)
            aggregate, aggregator_state, aggregator_metrics = self.aggregator.next_marked(
                state.aggregator, updates, weights_used, malicious
            )
        else:  # partial sums, one per slice
            aggregate, aggregator_state, aggregator_metrics = self.aggregator.combine_marked(
                state.aggregator, [s.partial for s in slices if s.finite], malicious
            )
        weights = [tf.constant(w) for w in broadcast.weights]
        skipped = aggregate is None
        if not skipped:
            aggregate = self.algorithm.server_aggregate(
                state.algorithm, aggregate, uploads, weights_used
            )
            server = {
                key: [tf.constant(a) for a in v] if isinstance(v, list) else tf.constant(v)
                for key, v in state.server.items()
            }
            new_server, new_weights, not_finite = self._server_step(
                weights, server, [tf.constant(a) for a in aggregate]
            )
            skipped = bool(not_finite)
        algorithm_metrics: dict[str, float] = {}
        if skipped:
            next_state, client_states, aggregator_metrics = state, {}, {}
        else:
            new_algorithm, algorithm_metrics = self.algorithm.server_update(
                state.algorithm, uploads
            )
            new_model = [w.numpy() for w in new_weights]
            new_model = self.algorithm.server_model(new_algorithm, new_model)
            next_state = FastState(
                weights=(*new_model, *state.weights[k:]),
                client_hparams=state.client_hparams,
                server={
                    key: [a.numpy() for a in v] if isinstance(v, list) else v.numpy()
                    for key, v in new_server.items()
                },
                algorithm=new_algorithm,
                aggregator=aggregator_state,
            )
        loss_total, loss_count, correct, count = (float(v) for v in metric_sums)
        return RoundOutput(
            state=next_state,
            # Keras' Mean.result(): divide_no_nan.
            train_loss=loss_total / loss_count if loss_count else 0.0,
            train_accuracy=correct / count if count else 0.0,
            examples_trained=examples,
            examples_expected=sum(int(np.asarray(work.order).size) for work in clients),
            update_skipped=skipped,
            client_states=client_states,
            algorithm_metrics=algorithm_metrics,
            aggregator_metrics=aggregator_metrics,
            attack_metrics=attack_metrics,
            update_bytes=update_bytes if self.compressor.active else None,
        )

    def close(self) -> None:
        """Stop the placement's threads or actors."""
        self.placement.close()

    def model_weights(self, state: FastState) -> list[np.ndarray]:
        """The global model's weights in Keras order (trainable, then non-trainable)."""
        return [np.array(w) for w in state.weights]

    def state_arrays(self, state: FastState) -> list[np.ndarray]:
        """The whole server state as a flat list of arrays, in the order TFF's state flattens:
        global weights, client optimizer hyperparameters, server optimizer state (sorted keys);
        then the algorithm's own state, if it has any."""
        return [np.asarray(leaf) for leaf in tf.nest.flatten(state.structure())]

    def state_from_arrays(self, arrays: list[np.ndarray]) -> FastState:
        """The server state back from ``state_arrays``; ValueError if it does not fit."""
        template = self.initialize([np.zeros(s, np.float32) for s in self.model.shapes])
        check_state_arrays(arrays, self.state_arrays(template))
        weights, hparams, aggregator, server, algorithm = tf.nest.pack_sequence_as(
            template.structure(), [np.array(a) for a in arrays]
        )
        return FastState(
            weights=tuple(weights),
            client_hparams=dict(hparams),
            server=dict(server),
            algorithm=dict(algorithm),
            aggregator=dict(aggregator),
        )
