"""Adam as TFF's ``build_adam`` computes it (Kingma & Ba 2015; FedAdam on the server).

TFF folds both bias corrections into the learning rate
(``lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``) and adds epsilon outside the square root.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlab.optimizers.base import (
    OPTIMIZERS,
    ZEROS,
    Optimizer,
    OptimizerConfig,
    in_unit_interval,
    positive,
)


@dataclass
class AdamConfig(OptimizerConfig):
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def validate(self, group: str) -> None:
        super().validate(group)
        in_unit_interval(group, "beta_1", self.beta_1)
        in_unit_interval(group, "beta_2", self.beta_2)
        positive(group, "epsilon", self.epsilon)


class AdamLike(Optimizer):
    """Adam's and Yogi's shared state and step; ``second_moment`` is what differs."""

    Config = AdamConfig

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.hparams.update(beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon)
        self.has_step = True

    def tff_arguments(self):
        c = self.cfg
        return {"learning_rate": c.lr, "beta_1": c.beta_1, "beta_2": c.beta_2, "epsilon": c.epsilon}

    def second_moment(self, p, g, beta_2):
        raise NotImplementedError

    def step(self, state, weights, grads):
        import tensorflow as tf

        lr = state["learning_rate"]
        beta_1, beta_2, eps = state["beta_1"], state["beta_2"], state["epsilon"]
        step = state["step"] + 1
        t = tf.cast(step, tf.float32)
        normalized_lr = (
            lr * tf.math.sqrt(1.0 - tf.math.pow(beta_2, t)) / (1.0 - tf.math.pow(beta_1, t))
        )
        accs, pres, out = [], [], []
        for w, a, p, g in zip(
            weights, state["accumulator"], state["preconditioner"], grads, strict=True
        ):
            a = a + (g - a) * (1.0 - beta_1)
            p = self.second_moment(p, g, beta_2)
            out.append(w - normalized_lr * a / (tf.math.sqrt(p) + eps))
            accs.append(a)
            pres.append(p)
        new = dict(state, accumulator=accs, preconditioner=pres, step=step)
        return new, out


@OPTIMIZERS.register("adam")
class Adam(AdamLike):
    tff_builder = "build_adam"
    server_recipe = "FedAdam"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.slots = {"accumulator": ZEROS, "preconditioner": ZEROS}

    def second_moment(self, p, g, beta_2):
        import tensorflow as tf

        return p + (tf.math.square(g) - p) * (1.0 - beta_2)

    def apply_to_variables(self, hparams, step, weights, slots, grads) -> None:
        import tensorflow as tf

        t = tf.cast(step, tf.float32)
        beta_1, beta_2 = hparams["beta_1"], hparams["beta_2"]
        beta_1_power, beta_2_power = tf.math.pow(beta_1, t), tf.math.pow(beta_2, t)
        for w, m, v, g in zip(
            weights, slots["accumulator"], slots["preconditioner"], grads, strict=True
        ):
            tf.raw_ops.ResourceApplyAdam(
                var=w.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=hparams["learning_rate"],
                beta1=beta_1,
                beta2=beta_2,
                epsilon=hparams["epsilon"],
                grad=g,
            )
