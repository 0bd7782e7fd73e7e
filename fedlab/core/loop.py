"""The round loop: sample, train, measure, commit, one round after another.

This is McMahan et al. 2017, Algorithm 1, kept apart from the algorithm (``fedlab.algorithms``),
from the engine that computes it (``fedlab.backends``) and from how a run is built
(``fedlab.experiment``), as fedjax keeps ``federated_experiment``: each round it samples the
clients, hands their work to the engine, and passes what came back to the callbacks, which
measure it and record it. It knows only the types it passes around (``fedlab.core.types``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from fedlab.core.types import ClientWork, Progress, RoundOutput, RoundRecord, TrainingContext
from fedlab.errors import DivergedError


def divergence(out: RoundOutput) -> str | None:
    """Why the round diverged (TFF would hide it: see ``RoundOutput``), or None."""
    if not math.isfinite(out.train_loss):
        return f"train loss is {out.train_loss}"
    if out.examples_trained == 0:
        return "every client's update was not finite"
    if out.update_skipped:
        return "the mean client update was not finite"
    return None


def check_diverged(out: RoundOutput, round_num: int) -> None:
    """Stop on divergence with a ``DivergedError`` (a learning rate far too large)."""
    why = divergence(out)
    if why is None:
        return
    raise DivergedError(
        f"training diverged at round {round_num}: {why}; "
        "lower the learning rates (client_optimizer.lr, server_optimizer.lr)"
    )


def train(
    ctx: TrainingContext,
    callbacks: Sequence[Any],
    sample: Callable[[int], Sequence[int]],
    client_work: Callable[[int, int], ClientWork],
    rounds: int,
    client_states: Any,
    diverged_is_result: bool = False,
) -> Progress:
    """The rounds from ``ctx.progress.round + 1`` to ``rounds`` (or until a callback stops).

    A round that diverges raises ``DivergedError``; with ``diverged_is_result`` (a run under
    attack, where a diverging model is what the attack achieved) it ends the run instead, as a
    callback's stop does: the diverged round is not committed, and the returned progress says
    where and why (``Progress.diverged``)."""
    try:
        for callback in callbacks:
            callback.on_train_begin(ctx)
        try:
            for round_num in range(ctx.progress.round + 1, rounds + 1):
                started = time.monotonic()
                work = [client_work(int(c), round_num) for c in sample(round_num)]
                out = ctx.engine.next(ctx.state, work)
                why = divergence(out) if diverged_is_result else None
                if why is not None:
                    ctx.progress = dataclasses.replace(
                        ctx.progress, diverged=f"round {round_num}: {why}"
                    )
                    break
                check_diverged(out, round_num)
                record = RoundRecord(
                    round=round_num,
                    output=out,
                    clients=len(work),
                    progress=dataclasses.replace(ctx.progress, round=round_num),
                    metrics={
                        "train/loss": out.train_loss,
                        "train/accuracy": out.train_accuracy,
                        "train/examples_dropped": out.examples_expected - out.examples_trained,
                        **{f"algorithm/{k}": v for k, v in out.algorithm_metrics.items()},
                        **{f"aggregator/{k}": v for k, v in out.aggregator_metrics.items()},
                        **{f"attack/{k}": v for k, v in out.attack_metrics.items()},
                    },
                    started=started,
                )
                for callback in callbacks:
                    callback.measure(ctx, record)
                # The round is done: only now does it become the run's state.
                ctx.state, ctx.progress = out.state, record.progress
                client_states.update(out.client_states, round_num)
                for callback in callbacks:
                    callback.after_round(ctx, record)
                if ctx.stop:
                    break
        except KeyboardInterrupt:
            for callback in callbacks:
                callback.on_interrupt(ctx)
            raise
        for callback in callbacks:
            callback.on_train_end(ctx)
    finally:
        for callback in callbacks:
            callback.close()
    return ctx.progress
