"""The privacy a run has spent (``fedlab.privacy``): ε at the option's δ after every round,
logged as ``privacy/epsilon``; with ``privacy.target_epsilon`` the run ends after the last round
that keeps ε within it (the next one would exceed it). ε depends only on the rounds done and the
config, so a resumed run continues the same series."""

from __future__ import annotations

import math

from fedlab.callbacks.base import CALLBACKS, Callback


@CALLBACKS.register("privacy")
class PrivacyCallback(Callback):
    def __init__(self, privacy) -> None:
        self.privacy = privacy

    @classmethod
    def create(cls, cfg, run) -> PrivacyCallback:
        return cls(run.parts.privacy)

    def measure(self, ctx, record) -> None:
        eps = self.privacy.epsilon(record.round)
        if eps is None:
            return
        if math.isfinite(eps):  # noise_multiplier=0: no guarantee, nothing to log
            record.metrics["privacy/epsilon"] = eps
            for key, value in self.privacy.extra_metrics(record.round).items():
                record.metrics[key] = value

    def after_round(self, ctx, record) -> None:
        target = self.privacy.target_epsilon
        if target is not None and self.privacy.epsilon(record.round + 1) > target:
            ctx.stop = True
