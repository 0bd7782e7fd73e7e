"""Federated Averaging (McMahan et al. 2017, Algorithm 1) as TFF's ``build_weighted_fed_avg``.

The server optimizer turns FedAvg into its generalisations (Reddi et al. 2020, "Adaptive Federated
Optimization"): server SGD with lr 1.0 is FedAvg, SGD with momentum is FedAvgM, Adam / Yogi /
Adagrad are FedAdam / FedYogi / FedAdagrad. The client update is weighted by its number of
examples, as in the paper.

This class knows nothing of rounds, sampling or evaluation: the round loop in
``fedlab.experiment`` drives it through ``initialize`` / ``next`` / ``model_weights``.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedlab.algorithm import ClientWork, RoundOutput, check_state_arrays
from fedlab.config import OptimizerConfig, OptimizerName
from fedlab.models import INPUT_DIM, build_model


def build_optimizer(cfg: OptimizerConfig) -> tff.learning.optimizers.Optimizer:
    """A TFF optimizer from the shared client/server optimizer schema."""
    opt = tff.learning.optimizers
    if cfg.name is OptimizerName.sgd:
        return opt.build_sgdm(learning_rate=cfg.lr)
    if cfg.name is OptimizerName.sgdm:
        return opt.build_sgdm(learning_rate=cfg.lr, momentum=cfg.momentum)
    if cfg.name is OptimizerName.adam:
        return opt.build_adam(
            learning_rate=cfg.lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon
        )
    if cfg.name is OptimizerName.yogi:
        return opt.build_yogi(
            learning_rate=cfg.lr,
            beta_1=cfg.beta_1,
            beta_2=cfg.beta_2,
            epsilon=cfg.epsilon,
            initial_preconditioner_value=cfg.initial_accumulator,
        )
    if cfg.name is OptimizerName.adagrad:
        return opt.build_adagrad(
            learning_rate=cfg.lr,
            initial_preconditioner_value=cfg.initial_accumulator,
            epsilon=cfg.epsilon,
        )
    raise ValueError(f"optimizer {cfg.name!r} is unknown")


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


class TffFedAvg:
    """FedAvg and its server-optimizer variants on TensorFlow Federated."""

    def __init__(
        self,
        model_name: str,
        client_optimizer: OptimizerConfig,
        server_optimizer: OptimizerConfig,
        num_classes: int = 10,
    ) -> None:
        input_spec = collections.OrderedDict(
            x=tf.TensorSpec([None, INPUT_DIM], tf.float32),
            y=tf.TensorSpec([None], tf.int32),
        )

        def model_fn() -> tff.learning.models.VariableModel:
            # TFF calls this inside its own graph contexts: build a fresh Keras model each time.
            return tff.learning.models.from_keras_model(
                build_model(model_name, num_classes),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                input_spec=input_spec,
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
            )

        self.process = tff.learning.algorithms.build_weighted_fed_avg(
            model_fn,
            client_optimizer_fn=build_optimizer(client_optimizer),
            server_optimizer_fn=build_optimizer(server_optimizer),
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
        """One round of FedAvg on the sampled clients."""
        output = self.process.next(state, [client_dataset(work) for work in clients])
        train = output.metrics["client_work"]["train"]
        return RoundOutput(
            state=output.state,
            train_loss=float(train["loss"]),
            train_accuracy=float(train["sparse_categorical_accuracy"]),
            examples_trained=int(train["num_examples"]),
            examples_expected=sum(int(work.order.size) for work in clients),
            update_skipped=bool(output.metrics["finalizer"]["update_non_finite"]),
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
