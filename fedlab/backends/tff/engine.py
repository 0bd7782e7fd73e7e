"""``engine=tff``: an algorithm as TFF 0.87's own builder computes it, in TFF's worker.

The algorithm names its ``tff.learning.algorithms`` builder (FedAvg: ``build_weighted_fed_avg``,
FedProx: ``build_weighted_fed_prox``), the optimizers name theirs in
``tff.learning.optimizers``, and the aggregator its ``tff.aggregators`` factory; this module
only looks them up by name. The server optimizer turns FedAvg into its generalisations (Reddi et
al. 2020): FedAvgM, FedAdam, FedYogi, FedAdagrad.

This class knows nothing of rounds, sampling or evaluation: the round loop in
``fedlab.core.loop.train`` drives it through ``initialize`` / ``next`` / ``model_weights``.
"""

from __future__ import annotations

import collections
import functools
import math

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedlab.aggregators import Aggregator
from fedlab.algorithms import Algorithm
from fedlab.core.types import ClientWork, RoundOutput, check_state_arrays
from fedlab.optimizers import Optimizer


def tff_optimizer(optimizer: Optimizer) -> tff.learning.optimizers.Optimizer:
    """TFF's own optimizer for one of fedlab's (same formulas: fedlab.optimizers)."""
    build = getattr(tff.learning.optimizers, optimizer.tff_builder)
    return build(**optimizer.tff_arguments())


def client_dataset(work: ClientWork) -> tf.data.Dataset:
    """Batches of one client's examples in ``work.order``, one epoch after the other.

    The client's examples are captured once; the epochs only carry indices, so E=20 does not copy
    the data 20 times into the computation sent to TFF's worker.
    """
    x = tf.constant(work.x, tf.float32)
    y = tf.constant(work.y, tf.int32)
    batch = work.batch_size or len(work.x)
    order = tf.data.Dataset.from_tensor_slices(work.order.astype(np.int32))
    batches = order.flat_map(lambda epoch: tf.data.Dataset.from_tensor_slices(epoch).batch(batch))
    return batches.map(
        lambda idx: collections.OrderedDict(x=tf.gather(x, idx), y=tf.gather(y, idx))
    )


def _aggregator_metrics(measurements) -> dict[str, float]:
    """The scalar measurements of TFF's aggregator that fedlab's own aggregators also report
    (DP's ``dp_query_metrics``: the clipping norm of the next round)."""
    found = {}
    query = (measurements or {}).get("dp_query_metrics") or {}
    if "clip" in query:
        found["clip"] = float(query["clip"])
    return found


class TffEngine:
    """An algorithm, an aggregator and a server optimizer on TensorFlow Federated."""

    def __init__(
        self,
        make_keras_model,
        input_shape: tuple[int, ...],
        client_optimizer: Optimizer,
        server_optimizer: Optimizer,
        algorithm: Algorithm,
        aggregator: Aggregator,
        target_shape: tuple[int, ...] = (),
        pad_label: int | None = None,
    ) -> None:
        from fedlab.backends.loss import keras_loss_and_metric

        if algorithm.tff_builder is None or aggregator.tff_factory is None:
            # fedlab.validation refuses these before a run starts; this guards direct use.
            raise ValueError(f"TFF 0.87 has no {algorithm.name} with {aggregator.name}")
        input_spec = collections.OrderedDict(
            x=tf.TensorSpec([None, math.prod(input_shape)], tf.float32),
            y=tf.TensorSpec([None, *target_shape], tf.int32),
        )

        def model_fn() -> tff.learning.models.VariableModel:
            # TFF calls this inside its own graph contexts: build a fresh Keras model each time.
            loss, accuracy = keras_loss_and_metric(pad_label)
            return tff.learning.models.from_keras_model(
                make_keras_model(), loss=loss, input_spec=input_spec, metrics=[accuracy]
            )

        builder = (
            algorithm.tff_builder if aggregator.tff_weighted else algorithm.tff_unweighted_builder
        )
        build = getattr(tff.learning.algorithms, builder)
        make_aggregator = functools.reduce(
            getattr, aggregator.tff_factory.split("."), tff.aggregators
        )
        self.process = build(
            model_fn,
            client_optimizer_fn=tff_optimizer(client_optimizer),
            server_optimizer_fn=tff_optimizer(server_optimizer),
            model_aggregator=make_aggregator(**aggregator.tff_arguments()),
            **algorithm.tff_arguments(),
        )

    def initialize(self, weights: list[np.ndarray]):
        """The server state, with the global model set to ``weights`` (Keras order)."""
        state = self.process.initialize()
        current = self.process.get_model_weights(state)
        trainable = [np.asarray(w, np.float32) for w in weights[: len(current.trainable)]]
        non_trainable = [np.asarray(w, np.float32) for w in weights[len(current.trainable) :]]
        return self.process.set_model_weights(
            state, tff.learning.models.ModelWeights(trainable, non_trainable)
        )

    def next(self, state, clients: list[ClientWork]) -> RoundOutput:
        """One round of the algorithm on the sampled clients."""
        output = self.process.next(state, [client_dataset(work) for work in clients])
        train = output.metrics["client_work"]["train"]
        return RoundOutput(
            state=output.state,
            train_loss=float(train["loss"]),
            train_accuracy=float(train["sparse_categorical_accuracy"]),
            examples_trained=int(train["num_examples"]),
            examples_expected=sum(int(work.order.size) for work in clients),
            update_skipped=bool(output.metrics["finalizer"]["update_non_finite"]),
            aggregator_metrics=_aggregator_metrics(output.metrics.get("aggregator")),
        )

    def state_arrays(self, state) -> list[np.ndarray]:
        """The whole server state (model, server optimizer, counters) as a flat list of arrays."""
        return [np.asarray(leaf) for leaf in tf.nest.flatten(state)]

    def state_from_arrays(self, arrays: list[np.ndarray]):
        """The server state back from ``state_arrays``; ValueError if it does not fit."""
        structure = self.process.initialize()  # a call into TFF's worker: once
        check_state_arrays(arrays, tf.nest.flatten(structure))
        return tf.nest.pack_sequence_as(structure, list(arrays))

    def model_weights(self, state) -> list[np.ndarray]:
        """The global model's weights in Keras order (trainable, then non-trainable)."""
        weights = self.process.get_model_weights(state)
        return [np.asarray(w) for w in (*weights.trainable, *weights.non_trainable)]
