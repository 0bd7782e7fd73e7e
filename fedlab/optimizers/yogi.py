"""Yogi (Zaheer et al. 2018; FedYogi on the server) as TFF's ``build_yogi`` computes it: Adam's
step with the additive second moment ``p + (1 - beta_2) * sign(g^2 - p) * g^2``, the
preconditioner starting at ``initial_accumulator``."""

from __future__ import annotations

from dataclasses import dataclass

from fedlab.optimizers.adam import AdamConfig, AdamLike
from fedlab.optimizers.base import OPTIMIZERS, PRECONDITIONER, ZEROS, non_negative


@dataclass
class YogiConfig(AdamConfig):
    initial_accumulator: float = 0.1  # the preconditioner's initial value

    def validate(self, group: str) -> None:
        super().validate(group)
        non_negative(group, "initial_accumulator", self.initial_accumulator)


@OPTIMIZERS.register("yogi")
class Yogi(AdamLike):
    Config = YogiConfig
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
