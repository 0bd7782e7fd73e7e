"""Yogi (Zaheer et al. 2018; FedYogi on the server) as TFF's ``build_yogi`` computes it: Adam's
step with the additive second moment ``p + (1 - beta_2) * sign(g^2 - p) * g^2``, the
preconditioner starting at ``initial_accumulator``."""

from __future__ import annotations

from fedlab.optimizers.adam import AdamLike
from fedlab.optimizers.base import OPTIMIZERS, PRECONDITIONER, ZEROS


@OPTIMIZERS.register("yogi")
class Yogi(AdamLike):
    name = "yogi"
    uses = ("beta_1", "beta_2", "epsilon", "initial_accumulator")
    tff_builder = "build_yogi"
    server_recipe = "FedYogi"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.slots = {"accumulator": ZEROS, "preconditioner": PRECONDITIONER}

    def tff_arguments(self):
        return {
            **super().tff_arguments(),
            "initial_preconditioner_value": self.cfg.initial_accumulator,
        }

    def second_moment(self, p, g, beta_2):
        import tensorflow as tf

        g2 = tf.math.square(g)
        return p + (1 - beta_2) * tf.sign(g2 - p) * g2
