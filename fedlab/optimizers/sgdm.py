"""SGD with momentum (TFF's ``build_sgdm``): ``a = momentum * a + g; w - lr * a``.

TFF tracks momentum only when it is given and non-zero: momentum 0 is plain SGD, with no
accumulator in the state.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlab.optimizers.base import OPTIMIZERS, ZEROS, Optimizer, OptimizerConfig, in_unit_interval
from fedlab.optimizers.sgd import SGD


@dataclass
class SgdmConfig(OptimizerConfig):
    momentum: float = 0.9

    def validate(self, group: str) -> None:
        super().validate(group)
        in_unit_interval(group, "momentum", self.momentum)


@OPTIMIZERS.register("sgdm")
class SGDM(Optimizer):
    Config = SgdmConfig
    tff_builder = "build_sgdm"
    server_recipe = "FedAvgM"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.plain = cfg.momentum == 0
        if not self.plain:
            self.hparams["momentum"] = cfg.momentum
            self.slots = {"accumulator": ZEROS}

    def tff_arguments(self):
        return {"learning_rate": self.cfg.lr, "momentum": self.cfg.momentum}

    def step(self, state, weights, grads):
        if self.plain:
            return SGD.step(self, state, weights, grads)
        lr, momentum = state["learning_rate"], state["momentum"]
        acc = [momentum * a + g for a, g in zip(state["accumulator"], grads, strict=True)]
        new = dict(state, accumulator=acc)
        return new, [w - lr * a for w, a in zip(weights, acc, strict=True)]

    def apply_to_variables(self, hparams, step, weights, slots, grads) -> None:
        if self.plain:
            return SGD.apply_to_variables(self, hparams, step, weights, slots, grads)
        import tensorflow as tf

        for w, a, g in zip(weights, slots["accumulator"], grads, strict=True):
            tf.raw_ops.ResourceApplyMomentum(
                var=w.handle,
                accum=a.handle,
                lr=hparams["learning_rate"],
                grad=g,
                momentum=hparams["momentum"],
            )
