"""TFF 0.87's optimizers (``tff.learning.optimizers``) in plain TensorFlow, formula for formula.

Each optimizer's state is a dict keyed by TFF's own state keys (``learning_rate``, ``beta_1``,
``accumulator``, ``preconditioner``, ``step``, ...). ``tf.nest.flatten`` sorts dict keys, so the
flat order of a state here is the flat order of TFF's state: a checkpoint is the same list of
arrays whichever engine wrote it.

The formulas are those of TFF's ``sgdm.py``, ``adam.py``, ``yogi.py`` and ``adagrad.py``,
including their quirks: Adam and Yogi fold both bias corrections into the learning rate
(``lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``) and add epsilon outside the square root; Adagrad
adds it inside; Yogi and Adagrad start their preconditioner at ``initial_accumulator``; SGD with
momentum 0 keeps no accumulator. Hyperparameters are float32 scalars, as TFF's computations make
them, and the step count is int32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fedlab.config import OptimizerConfig, OptimizerName

# Which state entries are lists with one array per trainable weight, and how they start.
_ZEROS = "zeros"
_PRECONDITIONER = "preconditioner"


class Optimizer:
    """One of TFF's optimizers, as pure functions of (state, weights, gradients)."""

    def __init__(self, cfg: OptimizerConfig) -> None:
        self.name = cfg.name
        name = cfg.name
        if name is OptimizerName.sgd or (name is OptimizerName.sgdm and cfg.momentum == 0):
            # TFF's build_sgdm tracks momentum only when it is given and non-zero.
            self.hparams = {"learning_rate": cfg.lr}
            self.slots: dict[str, str] = {}
            self.kind = "sgd"
        elif name is OptimizerName.sgdm:
            self.hparams = {"learning_rate": cfg.lr, "momentum": cfg.momentum}
            self.slots = {"accumulator": _ZEROS}
            self.kind = "sgdm"
        elif name in (OptimizerName.adam, OptimizerName.yogi):
            self.hparams = {
                "learning_rate": cfg.lr,
                "beta_1": cfg.beta_1,
                "beta_2": cfg.beta_2,
                "epsilon": cfg.epsilon,
            }
            self.slots = {
                "accumulator": _ZEROS,
                "preconditioner": _ZEROS if name is OptimizerName.adam else _PRECONDITIONER,
            }
            self.kind = name.value
        elif name is OptimizerName.adagrad:
            self.hparams = {"learning_rate": cfg.lr, "epsilon": cfg.epsilon}
            self.slots = {"preconditioner": _PRECONDITIONER}
            self.kind = "adagrad"
        else:
            raise ValueError(f"optimizer {name!r} is unknown")
        self.initial_preconditioner = cfg.initial_accumulator
        self.has_step = self.kind in ("adam", "yogi")

    def initial_state(self, shapes: Sequence[Sequence[int]]) -> dict[str, Any]:
        """The state before the first step, as NumPy (float32 scalars and arrays, int32 step)."""
        state: dict[str, Any] = {k: np.float32(v) for k, v in self.hparams.items()}
        for key, start in self.slots.items():
            fill = 0.0 if start == _ZEROS else self.initial_preconditioner
            state[key] = [np.full(shape, fill, np.float32) for shape in shapes]
        if self.has_step:
            state["step"] = np.int32(0)
        return dict(sorted(state.items()))

    def slot_start(self, key: str, like: tf.Tensor | tf.Variable) -> tf.Tensor:
        """Slot ``key``'s value before the first step, shaped like ``like`` (TF, client side)."""
        if self.slots[key] == _ZEROS:
            return tf.zeros(like.shape, tf.float32)
        fill = tf.constant(self.initial_preconditioner, tf.float32)
        return tf.ones(like.shape, tf.float32) * fill

    def apply_to_variables(
        self,
        hparams: dict[str, tf.Tensor],
        step: tf.Tensor,
        weights: list[tf.Variable],
        slots: dict[str, list[tf.Variable]],
        grads: list[tf.Tensor],
    ) -> None:
        """Step number ``step`` (1-based) of a client optimizer whose state lives in variables.

        SGD, momentum and Adam use TensorFlow's fused kernels (one pass over each weight instead
        of a dozen element-wise ops: the step of the CNN's 1.6M weights at B=10 is a large part
        of a client's time); their formulas are TFF's, and they agree with ``step`` bit for bit
        (tests/test_fast.py). Yogi and Adagrad run ``step`` and assign the result.
        """
        lr = hparams["learning_rate"]
        if self.kind == "sgd":
            for w, g in zip(weights, grads, strict=True):
                tf.raw_ops.ResourceApplyGradientDescent(var=w.handle, alpha=lr, delta=g)
            return
        if self.kind == "sgdm":
            for w, a, g in zip(weights, slots["accumulator"], grads, strict=True):
                tf.raw_ops.ResourceApplyMomentum(
                    var=w.handle, accum=a.handle, lr=lr, grad=g, momentum=hparams["momentum"]
                )
            return
        if self.kind == "adam":
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
                    lr=lr,
                    beta1=beta_1,
                    beta2=beta_2,
                    epsilon=hparams["epsilon"],
                    grad=g,
                )
            return
        state: dict[str, Any] = dict(hparams)
        for key, variables in slots.items():
            state[key] = [v.read_value() for v in variables]
        if self.has_step:
            state["step"] = step - 1
        new_state, new_weights = self.step(state, [w.read_value() for w in weights], grads)
        for w, value in zip(weights, new_weights, strict=True):
            w.assign(value)
        for key, variables in slots.items():
            for v, value in zip(variables, new_state[key], strict=True):
                v.assign(value)

    def step(
        self, state: dict[str, Any], weights: list[tf.Tensor], grads: list[tf.Tensor]
    ) -> tuple[dict[str, Any], list[tf.Tensor]]:
        """One optimizer step: TFF's ``Optimizer.next``."""
        lr = state["learning_rate"]
        new = dict(state)
        if self.kind == "sgd":
            return new, [w - lr * g for w, g in zip(weights, grads, strict=True)]
        if self.kind == "sgdm":
            momentum = state["momentum"]
            acc = [momentum * a + g for a, g in zip(state["accumulator"], grads, strict=True)]
            new["accumulator"] = acc
            return new, [w - lr * a for w, a in zip(weights, acc, strict=True)]
        if self.kind == "adagrad":
            eps = state["epsilon"]
            pre = [
                p + tf.math.square(g) for p, g in zip(state["preconditioner"], grads, strict=True)
            ]
            new["preconditioner"] = pre
            return new, [
                w - lr * g / tf.math.sqrt(p + eps)
                for w, g, p in zip(weights, grads, pre, strict=True)
            ]
        # Adam and Yogi.
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
            if self.kind == "adam":
                p = p + (tf.math.square(g) - p) * (1.0 - beta_2)
            else:
                g2 = tf.math.square(g)
                p = p + (1 - beta_2) * tf.sign(g2 - p) * g2
            out.append(w - normalized_lr * a / (tf.math.sqrt(p) + eps))
            accs.append(a)
            pres.append(p)
        new.update(accumulator=accs, preconditioner=pres, step=step)
        return new, out
