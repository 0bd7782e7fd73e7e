"""The optimizer interface: TFF 0.87's optimizers as pure functions of (state, weights, grads).

Each optimizer's state is a dict keyed by TFF's own state keys (``learning_rate``, ``beta_1``,
``accumulator``, ``preconditioner``, ``step``, ...). ``tf.nest.flatten`` sorts dict keys, so the
flat order of a state here is the flat order of TFF's state: a checkpoint is the same list of
arrays whichever engine wrote it. Hyperparameters are float32 scalars, as TFF's computations make
them, and the step count is int32.

TensorFlow is imported inside the methods that compute: the registry imports every optimizer
module to check names at compose time, before TensorFlow is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from omegaconf import MISSING

from fedlab.errors import ConfigError
from fedlab.plugin import Plugin, PluginConfig, Registry

ZEROS = "zeros"  # a slot that starts at 0
PRECONDITIONER = "preconditioner"  # a slot that starts at ``initial_accumulator``


@dataclass
class OptimizerConfig(PluginConfig):
    """The keys every optimizer has, in either role (``client_optimizer``, ``server_optimizer``);
    an optimizer with hyperparameters of its own extends it. ``validate`` checks the values; it
    is given the role, which the messages name."""

    lr: float = MISSING
    # The client optimizer's learning rate decays per round: round r trains with
    # lr * lr_decay**(r - 1) (McMahan et al. 2017, Figure 4: 0.99 for FedAvg, 0.9934 for FedSGD).
    lr_decay: float = 1.0
    # Each local step's gradient is clipped to this global L2 norm before the optimizer takes
    # it: ``g * c / max(||g||, c)`` over all the weights at once, as Keras' ``global_clipnorm``
    # (``tf.clip_by_global_norm``). The client's, on engine=fast; null: no clipping.
    global_clipnorm: float | None = None

    def validate(self, group: str) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"{group}.lr={self.lr} is invalid; allowed: a finite number > 0")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(
                f"{group}.lr_decay={self.lr_decay} is invalid; allowed: 0 < lr_decay <= 1 (1: none)"
            )
        clip = self.global_clipnorm
        if clip is not None and not (clip > 0 and math.isfinite(clip)):
            raise ConfigError(
                f"{group}.global_clipnorm={clip} is invalid; allowed: a finite number > 0, or "
                "null (no clipping)"
            )

    def learning_rate_at(self, round_num: int) -> float:
        """The learning rate of round ``round_num`` (1-based), as float32 computes it."""
        if self.lr_decay == 1:
            return self.lr
        return float(np.float32(self.lr) * np.float32(self.lr_decay) ** np.float32(round_num - 1))


# The keys of OptimizerConfig that only the client optimizer has, on engine=fast: each with its
# off value, that value as written on the command line, whose it is, and why engine=tff lacks it.
CLIENT_ONLY: dict[str, tuple[Any, str, str, str]] = {
    "lr_decay": (
        1.0,
        "1",
        "the decay schedule is the client optimizer's (McMahan et al.'s)",
        "fedlab does not pass a schedule to TFF's builders",
    ),
    "global_clipnorm": (
        None,
        "null",
        "clipping is of each local step's gradient, the client optimizer's",
        "fedlab builds TFF's own optimizers, which do not clip",
    ),
}


def in_unit_interval(group: str, key: str, value: float) -> None:
    """ConfigError unless 0 <= value < 1 (a momentum, a beta)."""
    if not 0 <= value < 1:
        raise ConfigError(f"{group}.{key}={value} is invalid; allowed: [0, 1)")


def positive(group: str, key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{group}.{key}={value} is invalid; allowed: > 0")


def non_negative(group: str, key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{group}.{key}={value} is invalid; allowed: >= 0")


class Optimizer(Plugin):
    """One of TFF's optimizers, built from its config (``Config``, extending ``OptimizerConfig``).

    A subclass sets ``hparams`` and ``slots`` in ``__init__``, ``tff_builder`` (the function of
    ``tff.learning.optimizers`` that builds it, with ``tff_arguments``), and ``step``.
    """

    Config: ClassVar[type] = OptimizerConfig
    tff_builder: ClassVar[str]
    #: What FedAvg becomes with this optimizer on the server (Reddi et al. 2020's names).
    server_recipe: ClassVar[str]

    @classmethod
    def check(cls, cfg: Any, run: Any) -> None:
        """The client-only keys (``CLIENT_ONLY``) at other than their off value: refused on the
        server optimizer and on engine=tff."""
        for key, (off, written, whose, on_tff) in CLIENT_ONLY.items():
            value = getattr(cfg, key, off)
            if value == off:
                continue
            if cfg is run.server_optimizer:
                raise ConfigError(
                    f"server_optimizer.{key}={value}: {whose}; allowed: "
                    f"server_optimizer.{key}={written}, or client_optimizer.{key}"
                )
            if str(run.engine) == "tff":
                raise ConfigError(
                    f"client_optimizer.{key}={value} cannot run on engine=tff ({on_tff}); "
                    f"allowed: engine=fast, or {key}={written}"
                )

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.hparams: dict[str, float] = {"learning_rate": cfg.lr}
        self.slots: dict[str, str] = {}
        self.initial_preconditioner = float(getattr(cfg, "initial_accumulator", 0.0))
        self.has_step = False

    @property
    def learning_rate(self) -> float:
        return float(self.cfg.lr)

    def tff_arguments(self) -> dict[str, float]:
        """Keyword arguments of ``tff.learning.optimizers.<tff_builder>``."""
        return {"learning_rate": self.cfg.lr}

    def initial_state(self, shapes: Sequence[Sequence[int]]) -> dict[str, Any]:
        """The state before the first step, as NumPy (float32 scalars and arrays, int32 step)."""
        state: dict[str, Any] = {k: np.float32(v) for k, v in self.hparams.items()}
        for key, start in self.slots.items():
            fill = 0.0 if start == ZEROS else self.initial_preconditioner
            state[key] = [np.full(shape, fill, np.float32) for shape in shapes]
        if self.has_step:
            state["step"] = np.int32(0)
        return dict(sorted(state.items()))

    def slot_start(self, key: str, like: Any) -> Any:
        """Slot ``key``'s value before the first step, shaped like ``like`` (TF, client side)."""
        import tensorflow as tf

        if self.slots[key] == ZEROS:
            return tf.zeros(like.shape, tf.float32)
        fill = tf.constant(self.initial_preconditioner, tf.float32)
        return tf.ones(like.shape, tf.float32) * fill

    def step(
        self, state: dict[str, Any], weights: list[Any], grads: list[Any]
    ) -> tuple[dict[str, Any], list[Any]]:
        """One optimizer step: TFF's ``Optimizer.next``."""
        raise NotImplementedError

    def apply_to_variables(
        self,
        hparams: dict[str, Any],
        step: Any,
        weights: list[Any],
        slots: dict[str, list[Any]],
        grads: list[Any],
    ) -> None:
        """Step number ``step`` (1-based) of a client optimizer whose state lives in variables.

        This default runs ``step`` and assigns the result; SGD, momentum and Adam override it
        with TensorFlow's fused kernels (one pass over each weight instead of a dozen element-wise
        ops: the step of the CNN's 1.6M weights at B=10 is a large part of a client's time), and
        agree with ``step`` bit for bit (tests/test_fast.py).
        """
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


OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer", "fedlab.optimizers", Optimizer)


def optimizer_config(name: str, **keys: Any) -> OptimizerConfig:
    """The config of optimizer ``name`` with ``keys`` (``lr`` at least), its defaults for the
    rest, checked: ``optimizer_config("adam", lr=1e-3)``."""
    cfg = OPTIMIZERS.get(str(name)).Config(name=str(name), **keys)
    cfg.validate(str(name))
    return cfg


def build_optimizer(cfg: Any) -> Optimizer:
    """The optimizer ``cfg`` (its ``Config``) configures."""
    return OPTIMIZERS.of(cfg)(cfg)
