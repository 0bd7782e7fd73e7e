"""The callback interface, what it is given, and the ``callbacks`` config group.

A callback is a plug-in (``fedlab.plugin``) registered by name; ``conf/callbacks/default.yaml``
lists the run's callbacks by name, each with its own keys, and a user adds their own with
``_target_`` (``callbacks.mine._target_=my_package.MyCallback``), as lightning-hydra-template
adds Lightning callbacks. The composition root (``fedlab.experiment``) creates each with
``create(cfg, run)``, given what it built for the run (``RunSetup``), and hands them to the round
loop in ``order`` (ties keep the config's order): the loop calls ``measure`` on each, then
``after_round`` on each, and ``on_train_begin`` / ``on_train_end`` / ``on_interrupt`` / ``close``
around the rounds (pfl-research's training-process callbacks have the same shape).

A callback that adds metrics in ``measure`` runs before ``tracking`` (which logs them), as every
callback of the default order 0 does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fedlab.core.types import Progress, RoundRecord, TrainingContext
from fedlab.plugin import Plugin, PluginConfig, Registry

__all__ = [
    "CALLBACKS",
    "Callback",
    "CallbackConfig",
    "Progress",
    "RoundRecord",
    "RunSetup",
    "TrainingContext",
]


@dataclass
class CallbackConfig(PluginConfig):
    """The keys every callback has; one with keys of its own extends it."""


@dataclass
class RunSetup:
    """What the composition root built for a run, for the callbacks it creates: the run's
    config, dataset and parts (``fedlab.backends.RoundParts``), where its files and checkpoint
    go, the per-client state store, and the round its tracker already has metrics for."""

    cfg: Any  # RunConfig
    dataset: Any  # FederatedDataset
    parts: Any  # RoundParts
    output_dir: Path
    tracker: Any
    checkpoint_path: Path
    checkpoint_key: str
    client_states: Any  # ClientStateStore
    logged_up_to: int
    progress: bool  # whether to show the progress bar
    description: str  # the run's recipe and partition, for the progress bar
    trial: Any = None  # its Optuna trial in a search (fedlab.callbacks.pruning.TrialLink)


class Callback(Plugin):
    """Every hook does nothing; a callback overrides the ones it needs."""

    Config: ClassVar[type] = CallbackConfig
    #: Where it runs among the run's callbacks: lower first; ties keep the config's order.
    order: ClassVar[int] = 0

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = cfg

    @classmethod
    def create(cls, cfg: Any, run: RunSetup) -> Callback | None:
        """This callback for the run: its config ``cfg`` and what was built for the run. The
        default is ``cls(cfg)``; a callback that needs none of ``run`` keeps it. None: the run
        does not need it (no checkpoints without ``checkpoint_every``)."""
        return cls(cfg)

    def on_train_begin(self, ctx: TrainingContext) -> None:
        """Before the first round of this invocation (a resumed run starts past round 0)."""

    def measure(self, ctx: TrainingContext, record: RoundRecord) -> None:
        """Add to ``record.metrics`` / ``record.progress``; the round is not yet the run's."""

    def after_round(self, ctx: TrainingContext, record: RoundRecord) -> None:
        """The round is now the run's state (``ctx.state``, ``ctx.progress``)."""

    def on_interrupt(self, ctx: TrainingContext) -> None:
        """Ctrl-C or SIGTERM: the round in flight is abandoned; the last finished one stands."""

    def on_train_end(self, ctx: TrainingContext) -> None:
        """After the last round (or the one a callback stopped at), still inside the engine's
        runtime."""

    def close(self) -> None:
        """Always, last (release what the callback holds)."""


CALLBACKS: Registry[type[Callback]] = Registry("callback", "fedlab.callbacks", Callback)
