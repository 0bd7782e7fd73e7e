"""Plain SGD (TFF's ``build_sgdm`` without momentum): ``w - lr * g``."""

from __future__ import annotations

from fedlab.optimizers.base import OPTIMIZERS, Optimizer


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    tff_builder = "build_sgdm"
    server_recipe = "FedAvg"

    def step(self, state, weights, grads):
        lr = state["learning_rate"]
        return dict(state), [w - lr * g for w, g in zip(weights, grads, strict=True)]

    def apply_to_variables(self, hparams, step, weights, slots, grads) -> None:
        import tensorflow as tf

        lr = hparams["learning_rate"]
        for w, g in zip(weights, grads, strict=True):
            tf.raw_ops.ResourceApplyGradientDescent(var=w.handle, alpha=lr, delta=g)
