"""Adagrad (Duchi et al. 2011; FedAdagrad on the server) as TFF's ``build_adagrad`` computes it:
the preconditioner starts at ``initial_accumulator`` and epsilon goes inside the square root."""

from __future__ import annotations

from dataclasses import dataclass

from fedlab.optimizers.base import (
    OPTIMIZERS,
    PRECONDITIONER,
    Optimizer,
    OptimizerConfig,
    non_negative,
    positive,
)


@dataclass
class AdagradConfig(OptimizerConfig):
    epsilon: float = 1e-7
    initial_accumulator: float = 0.1  # the preconditioner's initial value

    def validate(self, group: str) -> None:
        super().validate(group)
        positive(group, "epsilon", self.epsilon)
        non_negative(group, "initial_accumulator", self.initial_accumulator)


@OPTIMIZERS.register("adagrad")
class Adagrad(Optimizer):
    Config = AdagradConfig
    tff_builder = "build_adagrad"
    server_recipe = "FedAdagrad"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.hparams["epsilon"] = cfg.epsilon
        self.slots = {"preconditioner": PRECONDITIONER}

    def tff_arguments(self):
        return {
            "learning_rate": self.cfg.lr,
            "initial_preconditioner_value": self.cfg.initial_accumulator,
            "epsilon": self.cfg.epsilon,
        }

    def step(self, state, weights, grads):
        import tensorflow as tf

        lr, eps = state["learning_rate"], state["epsilon"]
        pre = [p + tf.math.square(g) for p, g in zip(state["preconditioner"], grads, strict=True)]
        new = dict(state, preconditioner=pre)
        return new, [
            w - lr * g / tf.math.sqrt(p + eps) for w, g, p in zip(weights, grads, pre, strict=True)
        ]
